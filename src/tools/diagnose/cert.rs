//! A certificate as `diagnose` judges it, and Go's `crypto/x509` rules with Go's exact error
//! strings: what kube-apiserver (a Go client) prints when it verifies a kubelet's serving
//! certificate (`crypto/x509/verify.go`: `isValid`, `VerifyHostname`, `HostnameError`,
//! `UnknownAuthorityError`), plus the trust check itself through rustls/webpki.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Go's error for a certificate whose EKUs exclude server auth.
pub const INCOMPATIBLE_USAGE: &str = "x509: certificate specifies an incompatible key usage";
/// Go's error for a chain that does not reach the given roots.
pub const UNKNOWN_AUTHORITY: &str = "x509: certificate signed by unknown authority";

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

/// Go's `time.RFC3339` of a Unix time, in UTC.
pub fn rfc3339(unix: i64) -> String {
    let format = time::format_description::well_known::Rfc3339;
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// `isValid`'s time check on the leaf, with Go's message.
pub fn go_validity(f: &Facts, now: i64) -> Result<(), String> {
    let expired = "x509: certificate has expired or is not yet valid";
    if now < f.not_before {
        return Err(format!(
            "{expired}: current time {} is before {}",
            rfc3339(now),
            rfc3339(f.not_before)
        ));
    }
    if now > f.not_after {
        return Err(format!(
            "{expired}: current time {} is after {}",
            rfc3339(now),
            rfc3339(f.not_after)
        ));
    }
    Ok(())
}

/// `isValid`'s EKU check on the leaf for `KeyUsages: [ServerAuth]` (the default of a TLS client).
pub fn go_server_usage(f: &Facts) -> Result<(), String> {
    match &f.eku {
        Some(e) if !e.any && !e.server_auth => Err(INCOMPATIBLE_USAGE.into()),
        _ => Ok(()),
    }
}

/// The same for a client certificate, as the kubelet's x509 authenticator verifies it.
pub fn go_client_usage(f: &Facts) -> Result<(), String> {
    match &f.eku {
        Some(e) if !e.any && !e.client_auth => Err(INCOMPATIBLE_USAGE.into()),
        _ => Ok(()),
    }
}

/// `Certificate.VerifyHostname` with `HostnameError`'s message.
pub fn go_verify_hostname(f: &Facts, host: &str) -> Result<(), String> {
    let candidate_ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|_| host.len() >= 3)
        .unwrap_or(host);
    if let Ok(ip) = candidate_ip.parse::<IpAddr>() {
        if f.ips.iter().any(|c| c.to_canonical() == ip.to_canonical()) {
            return Ok(());
        }
        return Err(hostname_error(f, candidate_ip));
    }
    let candidate = host.to_ascii_lowercase();
    let valid_candidate = valid_hostname(&candidate, false);
    for pattern in &f.dns {
        let matched = if valid_candidate && valid_hostname(pattern, true) {
            match_hostnames(pattern, &candidate)
        } else {
            match_exactly(pattern, &candidate)
        };
        if matched {
            return Ok(());
        }
    }
    Err(hostname_error(f, host))
}

/// `HostnameError.Error()`.
fn hostname_error(f: &Facts, host: &str) -> String {
    if !f.has_san && match_hostnames(&f.cn, host) {
        return "x509: certificate relies on legacy Common Name field, use SANs instead".into();
    }
    let valid = if host.parse::<IpAddr>().is_ok() {
        if f.ips.is_empty() {
            return format!("x509: cannot validate certificate for {host} because it doesn't contain any IP SANs");
        }
        f.ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    } else {
        f.dns.join(", ")
    };
    if valid.is_empty() {
        return format!("x509: certificate is not valid for any names, but wanted to match {host}");
    }
    format!("x509: certificate is valid for {valid}, not {host}")
}

fn valid_hostname(host: &str, is_pattern: bool) -> bool {
    let host = if is_pattern {
        host
    } else {
        host.strip_suffix('.').unwrap_or(host)
    };
    if host.is_empty() {
        return false;
    }
    host.split('.').enumerate().all(|(i, part)| {
        if part.is_empty() {
            return false;
        }
        if is_pattern && i == 0 && part == "*" {
            return true;
        }
        part.char_indices()
            .all(|(j, c)| c.is_ascii_alphanumeric() || (c == '-' && j != 0) || c == '_')
    })
}

fn match_exactly(a: &str, b: &str) -> bool {
    if a.is_empty() || a == "." || b.is_empty() || b == "." {
        return false;
    }
    a.eq_ignore_ascii_case(b)
}

fn match_hostnames(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .enumerate()
            .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
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

/// Whether the chain reaches `roots` for the usage the leaf carries, judged at `at` (inside the
/// leaf's validity, so that this answers only "who signed it"). `Err` carries Go's message.
pub fn trust(
    chain: &[Facts],
    roots: &Arc<RootCertStore>,
    ca_ders: &[CertificateDer<'static>],
    at: i64,
) -> Result<(), String> {
    let Some((leaf, rest)) = chain.split_first() else {
        return Err("no certificate".into());
    };
    // Go accepts a leaf that is itself in the roots pool (`opts.Roots.contains(c)`).
    if ca_ders.iter().any(|c| c.as_ref() == leaf.der.as_ref()) {
        return Ok(());
    }
    let intermediates: Vec<CertificateDer<'static>> = rest.iter().map(|f| f.der.clone()).collect();
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(at).unwrap_or(0)));
    let provider = crate::tls::provider();
    let result = if go_server_usage(leaf).is_ok() {
        let parsed = ParsedCertificate::try_from(&leaf.der).map_err(|e| format!("unparsable certificate: {e}"))?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            &intermediates,
            time,
            provider.signature_verification_algorithms.all,
        )
    } else {
        // A certificate without server auth: judge its chain for the usage it has, so that this
        // check says who signed it (the usage check says the rest).
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| e.to_string())?;
        verifier.verify_client_cert(&leaf.der, &intermediates, time).map(|_| ())
    };
    result.map_err(|e| go_trust_error(&e))
}

fn go_trust_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => UNKNOWN_AUTHORITY.into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                INCOMPATIBLE_USAGE.into()
            }
            CertificateError::ExpiredContext { time, not_after } => format!(
                "x509: certificate has expired or is not yet valid: current time {} is after {} (a CA in the chain)",
                rfc3339(unix(*time)),
                rfc3339(unix(*not_after))
            ),
            CertificateError::NotValidYetContext { time, not_before } => format!(
                "x509: certificate has expired or is not yet valid: current time {} is before {} (a CA in the chain)",
                rfc3339(unix(*time)),
                rfc3339(unix(*not_before))
            ),
            other => format!("the chain is not valid: {other:?}"),
        },
        other => format!("the chain is not valid: {other}"),
    }
}

fn unix(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
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
    fn hostname_errors_are_go_s() {
        let dns_only = facts(&["node-a"], &[], "node-a@1700000000");
        assert_eq!(
            go_verify_hostname(&dns_only, "10.0.0.5"),
            Err("x509: cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs".into())
        );
        assert_eq!(
            go_verify_hostname(&dns_only, "node-a.example.internal"),
            Err("x509: certificate is valid for node-a, not node-a.example.internal".into())
        );
        assert_eq!(go_verify_hostname(&dns_only, "NODE-A."), Ok(()));
        let both = facts(&["node-a", "*.nodes.example"], &["10.0.0.5", "fd00::5"], "x");
        assert_eq!(go_verify_hostname(&both, "10.0.0.5"), Ok(()));
        assert_eq!(go_verify_hostname(&both, "[fd00::5]"), Ok(()));
        assert_eq!(go_verify_hostname(&both, "a.nodes.example"), Ok(()));
        assert!(go_verify_hostname(&both, "a.b.nodes.example").is_err());
        assert_eq!(
            go_verify_hostname(&both, "10.0.0.6"),
            Err("x509: certificate is valid for 10.0.0.5, fd00::5, not 10.0.0.6".into())
        );
        let legacy = facts(&[], &[], "node-a");
        assert_eq!(
            go_verify_hostname(&legacy, "node-a"),
            Err("x509: certificate relies on legacy Common Name field, use SANs instead".into())
        );
        assert_eq!(
            go_verify_hostname(&legacy, "node-b"),
            Err("x509: certificate is not valid for any names, but wanted to match node-b".into())
        );
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
        assert_eq!(go_server_usage(&f), Ok(()));
        f.eku = Some(Eku {
            any: false,
            server_auth: false,
            client_auth: true,
            names: vec!["clientAuth".into()],
        });
        assert_eq!(go_server_usage(&f), Err(INCOMPATIBLE_USAGE.into()));
        assert_eq!(go_client_usage(&f), Ok(()));
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
