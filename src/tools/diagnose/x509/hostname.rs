//! The dialled name against the certificate: golang/go src/crypto/x509/verify.go
//! `(*Certificate).VerifyHostname` and `HostnameError.Error()`. An IP address is matched
//! against IP SANs only; a name against DNS SANs (with a leading `*` label as wildcard), never
//! the Common Name.

use std::net::IpAddr;

use super::certificate::Certificate;
use super::error::X509Error;

/// `HostnameError` lists at most this many names (`maxNamesIncluded`).
const MAX_NAMES_INCLUDED: usize = 100;

pub fn verify_hostname(c: &Certificate, host: &str) -> Result<(), X509Error> {
    let candidate_ip = if host.len() >= 3 && host.starts_with('[') && host.ends_with(']') {
        &host[1..host.len() - 1]
    } else {
        host
    };
    if let Ok(ip) = candidate_ip.parse::<IpAddr>() {
        if c.ip_addresses.iter().any(|a| a.to_canonical() == ip.to_canonical()) {
            return Ok(());
        }
        return Err(hostname_error(c, candidate_ip));
    }
    let candidate = host.to_ascii_lowercase();
    let valid_candidate = valid_hostname(&candidate, false);
    let host_parts = split_hostname(&candidate);
    for pattern in &c.dns_names {
        let matched = if valid_candidate && valid_hostname(pattern, true) {
            match_hostnames(pattern, &host_parts)
        } else {
            match_exactly(pattern, &candidate)
        };
        if matched {
            return Ok(());
        }
    }
    Err(hostname_error(c, host))
}

/// `HostnameError.Error()`.
fn hostname_error(c: &Certificate, host: &str) -> X509Error {
    let message = if !c.has_san_extension && match_hostnames(&c.common_name, &split_hostname(host)) {
        "x509: certificate relies on legacy Common Name field, use SANs instead".to_owned()
    } else if host.parse::<IpAddr>().is_ok() {
        if c.ip_addresses.is_empty() {
            format!("x509: cannot validate certificate for {host} because it doesn't contain any IP SANs")
        } else if c.ip_addresses.len() >= MAX_NAMES_INCLUDED {
            format!(
                "x509: certificate is valid for {} IP SANs, but none matched {host}",
                c.ip_addresses.len()
            )
        } else {
            // net.IP.String() prints an IPv4-mapped address as IPv4.
            let valid: Vec<String> = c.ip_addresses.iter().map(|ip| ip.to_canonical().to_string()).collect();
            format!("x509: certificate is valid for {}, not {host}", valid.join(", "))
        }
    } else if c.dns_names.len() >= MAX_NAMES_INCLUDED {
        format!(
            "x509: certificate is valid for {} names, but none matched {host}",
            c.dns_names.len()
        )
    } else if c.dns_names.join(", ").is_empty() {
        format!("x509: certificate is not valid for any names, but wanted to match {host}")
    } else {
        format!("x509: certificate is valid for {}, not {host}", c.dns_names.join(", "))
    };
    X509Error::Hostname { message }
}

/// `splitHostname`.
fn split_hostname(host: &str) -> Vec<String> {
    host.strip_suffix('.')
        .unwrap_or(host)
        .to_ascii_lowercase()
        .split('.')
        .map(str::to_owned)
        .collect()
}

/// `validHostname`.
fn valid_hostname(host: &str, is_pattern: bool) -> bool {
    let host = if is_pattern {
        host
    } else {
        host.strip_suffix('.').unwrap_or(host)
    };
    if host.is_empty() || host == "*" {
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

/// `matchExactly`.
fn match_exactly(a: &str, b: &str) -> bool {
    if a.is_empty() || a == "." || b.is_empty() || b == "." {
        return false;
    }
    a.eq_ignore_ascii_case(b)
}

/// `matchHostnames`.
fn match_hostnames(pattern: &str, host_parts: &[String]) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if pattern.is_empty() || host_parts.is_empty() {
        return false;
    }
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == host_parts.len()
        && parts
            .iter()
            .zip(host_parts)
            .enumerate()
            .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
}

#[cfg(test)]
mod tests {
    use super::super::certificate::{Certificate, PublicKey, SignatureAlgorithm};
    use super::*;

    pub(crate) fn cert(dns: &[&str], ips: &[&str], cn: &str) -> Certificate {
        Certificate {
            raw: Vec::new(),
            raw_tbs: Vec::new(),
            raw_subject: vec![1],
            raw_issuer: vec![2],
            raw_spki: Vec::new(),
            version: 3,
            serial: "1".into(),
            common_name: cn.into(),
            organization: Vec::new(),
            subject: format!("CN={cn}"),
            not_before: 1_000,
            not_after: 2_000,
            basic_constraints_valid: true,
            is_ca: false,
            max_path_len: -1,
            key_usage: 0,
            ext_key_usage: None,
            has_san_extension: !(dns.is_empty() && ips.is_empty()),
            san_value: None,
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().expect("ip")).collect(),
            authority_key_id: Vec::new(),
            subject_key_id: Vec::new(),
            unhandled_critical_extension: false,
            public_key: PublicKey::Unknown,
            signature_algorithm: SignatureAlgorithm::Unknown,
            signature: Vec::new(),
        }
    }

    fn message(c: &Certificate, host: &str) -> Option<String> {
        verify_hostname(c, host).err().map(|e| e.to_string())
    }

    #[test]
    fn hostname_errors_are_go_s() {
        let dns_only = cert(&["node-a"], &[], "node-a@1700000000");
        assert_eq!(
            message(&dns_only, "10.0.0.5").as_deref(),
            Some("x509: cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs")
        );
        assert_eq!(
            message(&dns_only, "node-a.example.internal").as_deref(),
            Some("x509: certificate is valid for node-a, not node-a.example.internal")
        );
        assert_eq!(message(&dns_only, "NODE-A."), None);
        let both = cert(&["node-a", "*.nodes.example"], &["10.0.0.5", "fd00::5"], "x");
        assert_eq!(message(&both, "10.0.0.5"), None);
        assert_eq!(message(&both, "[fd00::5]"), None);
        assert_eq!(message(&both, "a.nodes.example"), None);
        assert!(message(&both, "a.b.nodes.example").is_some());
        assert_eq!(
            message(&both, "10.0.0.6").as_deref(),
            Some("x509: certificate is valid for 10.0.0.5, fd00::5, not 10.0.0.6")
        );
        let legacy = cert(&[], &[], "node-a");
        assert_eq!(
            message(&legacy, "node-a").as_deref(),
            Some("x509: certificate relies on legacy Common Name field, use SANs instead")
        );
        assert_eq!(
            message(&legacy, "node-b").as_deref(),
            Some("x509: certificate is not valid for any names, but wanted to match node-b")
        );
        let legacy_ip = cert(&[], &[], "127.0.0.1");
        assert_eq!(
            message(&legacy_ip, "127.0.0.1").as_deref(),
            Some("x509: certificate relies on legacy Common Name field, use SANs instead")
        );
        // "*" alone is no valid input name, so it is matched exactly (validHostname).
        let star = cert(&["*"], &[], "x");
        assert_eq!(message(&star, "*"), None);
        assert!(message(&star, "a").is_some());
    }
}
