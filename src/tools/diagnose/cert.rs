//! A certificate as `diagnose` describes it to people (subject, SANs, usages, fingerprint),
//! and the checks of the client certificate as the kubelet's x509 authenticator reads it. The
//! serving chain is judged by `x509`, Go's rules.

use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::x509::error::{InvalidReason, Window, X509Error};

/// Extended key usages, when the extension is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eku {
    pub any: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Every usage by name, for the evidence.
    pub names: Vec<String>,
}

/// The fields of one certificate that the checks read.
#[derive(Debug, Clone)]
pub struct Facts {
    pub der: CertificateDer<'static>,
    pub subject: String,
    pub issuer: String,
    pub subject_raw: Vec<u8>,
    pub issuer_raw: Vec<u8>,
    /// The last CN, as Go reads it; empty when there is none.
    pub cn: String,
    pub issuer_cn: String,
    pub orgs: Vec<String>,
    /// Decimal, as Go prints serial numbers.
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub has_san: bool,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// `None`: no EKU extension (Go accepts that for any usage).
    pub eku: Option<Eku>,
    pub is_ca: bool,
    pub sha256: String,
}

impl Facts {
    pub fn parse(der: &CertificateDer<'_>) -> Result<Facts, String> {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| format!("unparsable certificate: {e}"))?;
        let last_cn = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name()
                .last()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let mut facts = Facts {
            der: der.clone().into_owned(),
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            subject_raw: c.subject().as_raw().to_vec(),
            issuer_raw: c.issuer().as_raw().to_vec(),
            cn: last_cn(c.subject()),
            issuer_cn: last_cn(c.issuer()),
            orgs: c
                .subject()
                .iter_organization()
                .filter_map(|o| o.as_str().ok().map(str::to_owned))
                .collect(),
            serial: c.serial.to_string(),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            has_san: false,
            dns: Vec::new(),
            ips: Vec::new(),
            eku: None,
            is_ca: c.basic_constraints().ok().flatten().is_some_and(|b| b.value.ca),
            sha256: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        };
        if let Ok(Some(san)) = c.subject_alternative_name() {
            facts.has_san = true;
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => facts.dns.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                            _ => None,
                        };
                        facts.ips.extend(ip);
                    }
                    _ => {}
                }
            }
        }
        if let Ok(Some(eku)) = c.extended_key_usage() {
            let e = eku.value;
            let mut names = Vec::new();
            for (set, name) in [
                (e.any, "any"),
                (e.server_auth, "serverAuth"),
                (e.client_auth, "clientAuth"),
                (e.code_signing, "codeSigning"),
                (e.email_protection, "emailProtection"),
                (e.time_stamping, "timeStamping"),
                (e.ocsp_signing, "OCSPSigning"),
            ] {
                if set {
                    names.push(name.to_owned());
                }
            }
            names.extend(e.other.iter().map(|o| o.to_id_string()));
            facts.eku = Some(Eku {
                any: e.any,
                server_auth: e.server_auth,
                client_auth: e.client_auth,
                names,
            });
        }
        Ok(facts)
    }

    pub fn self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    pub fn valid_at(&self, unix: i64) -> bool {
        self.not_before <= unix && unix <= self.not_after
    }

    /// `DNS: a, b; IP: 10.0.0.5`, or `none`.
    pub fn sans(&self) -> String {
        let dns = if self.dns.is_empty() {
            "none".to_owned()
        } else {
            self.dns.join(", ")
        };
        let ips = if self.ips.is_empty() {
            "none".to_owned()
        } else {
            self.ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        };
        format!("DNS SANs: {dns}; IP SANs: {ips}")
    }

    pub fn usages(&self) -> String {
        match &self.eku {
            None => "no extended key usage extension (any usage)".into(),
            Some(e) => e.names.join(", "),
        }
    }
}

pub use super::x509::rfc3339;

/// `isValid`'s time check (golang/go src/crypto/x509/verify.go), with Go's message.
pub fn go_validity(f: &Facts, now: i64) -> Result<(), String> {
    if now < f.not_before {
        return Err(X509Error::expired(
            now,
            Window::Before {
                not_before: f.not_before,
            },
            &f.subject,
        )
        .to_string());
    }
    if now > f.not_after {
        return Err(X509Error::expired(now, Window::After { not_after: f.not_after }, &f.subject).to_string());
    }
    Ok(())
}

/// `checkChainForKeyUsage` on the leaf alone for client auth, as the kubelet's x509
/// authenticator verifies kube-apiserver's certificate.
pub fn go_client_usage(f: &Facts) -> Result<(), String> {
    match &f.eku {
        Some(e) if !e.any && !e.client_auth && !e.names.is_empty() => {
            Err(X509Error::invalid(InvalidReason::IncompatibleUsage, &f.subject).to_string())
        }
        _ => Ok(()),
    }
}

/// The kubelet's self-signed pair (`<host>@<unix>` issued by `<host>-ca@<unix>`), or any
/// self-issued certificate. Returns a description.
pub fn self_signed(leaf: &Facts) -> Option<String> {
    let stamp = |s: &str| {
        s.rsplit_once('@')
            .filter(|(h, t)| !h.is_empty() && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h.to_owned())
    };
    if let (Some(host), Some(ca_host)) = (stamp(&leaf.cn), stamp(&leaf.issuer_cn))
        && ca_host == format!("{host}-ca")
    {
        return Some(format!(
            "the kubelet's self-signed certificate: {} issued by the node's own CA {} (each node makes its own CA)",
            leaf.cn, leaf.issuer_cn
        ));
    }
    if leaf.self_issued() {
        return Some(format!(
            "a self-signed certificate: its issuer is its subject ({})",
            leaf.subject
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dns: &[&str], ips: &[&str], cn: &str) -> Facts {
        Facts {
            der: CertificateDer::from(Vec::new()),
            subject: format!("CN={cn}"),
            issuer: "CN=ca".into(),
            subject_raw: vec![1],
            issuer_raw: vec![2],
            cn: cn.into(),
            issuer_cn: "ca".into(),
            orgs: Vec::new(),
            serial: "1".into(),
            not_before: 1_000,
            not_after: 2_000,
            has_san: !(dns.is_empty() && ips.is_empty()),
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.parse().expect("ip")).collect(),
            eku: None,
            is_ca: false,
            sha256: String::new(),
        }
    }

    #[test]
    fn validity_and_usage_messages() {
        let mut f = facts(&["a"], &[], "a");
        f.not_before = 1_700_000_000;
        f.not_after = 1_700_086_400;
        assert_eq!(
            go_validity(&f, 1_700_090_000),
            Err("x509: certificate has expired or is not yet valid: current time 2023-11-15T23:13:20Z is after 2023-11-15T22:13:20Z".into())
        );
        assert!(go_validity(&f, 1_699_999_999).is_err_and(|e| e.contains("is before 2023-11-14T22:13:20Z")));
        assert_eq!(go_validity(&f, 1_700_000_000), Ok(()));
        assert_eq!(go_client_usage(&f), Ok(()));
        f.eku = Some(Eku {
            any: false,
            server_auth: false,
            client_auth: true,
            names: vec!["clientAuth".into()],
        });
        assert_eq!(go_client_usage(&f), Ok(()));
        f.eku = Some(Eku {
            any: false,
            server_auth: true,
            client_auth: false,
            names: vec!["serverAuth".into()],
        });
        assert_eq!(
            go_client_usage(&f),
            Err("x509: certificate specifies an incompatible key usage".into())
        );
    }

    #[test]
    fn kubelet_self_signed_names() {
        let mut f = facts(&["node-a"], &[], "node-a@1700000000");
        f.issuer_cn = "node-a-ca@1700000000".into();
        assert!(self_signed(&f).is_some_and(|d| d.contains("node-a-ca@1700000000")));
        f.issuer_cn = "kubernetes".into();
        assert_eq!(self_signed(&f), None);
        f.issuer_raw = f.subject_raw.clone();
        assert!(self_signed(&f).is_some());
    }
}
