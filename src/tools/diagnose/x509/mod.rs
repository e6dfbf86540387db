//! Go's certificate verification as kube-apiserver runs it against a kubelet, ported so that
//! `diagnose`'s verdict and messages are Go's, not what rustls/webpki would decide.
//! kube-apiserver is a Go TLS client with `RootCAs` from `--kubelet-certificate-authority`, no
//! `KeyUsages` (so server auth), the server name from the dialled host, and the intermediates
//! the kubelet sends.
//!
//! Ported from golang/go (Go 1.26): src/crypto/x509/verify.go (`Verify`, `isValid`,
//! `buildChains`, `alreadyInChain`, `VerifyHostname`, `checkChainForKeyUsage`, the error
//! types), src/crypto/x509/cert_pool.go (`findPotentialParents`, `contains`),
//! src/crypto/x509/x509.go (`CheckSignatureFrom`, `checkSignature`, the signature algorithm
//! table), src/crypto/x509/parser.go (which critical extensions are handled),
//! src/crypto/rsa (key size, PKCS #1 v1.5 and PSS), src/crypto/tls/handshake_client.go
//! (`verifyServerCertificate`), src/crypto/tls/auth.go (`verifyHandshakeSignature`).
//!
//! Deliberately not ported, because a kubelet's serving chain does not meet them or because Go
//! would not even parse the certificate: name constraints (`checkChainConstraints`),
//! certificate policies (`policiesValid`), distrusted system roots, system roots and platform
//! verifiers, Go's parser's own refusals (their messages are x509-parser's), DSA, P-224 and
//! X25519 keys, and ECDSA P-384 with SHA-1.

pub mod certificate;
pub mod error;
pub mod hostname;
pub mod rsa;
pub mod signature;
pub mod tls;
pub mod verify;

pub use certificate::{CertPool, Certificate};
pub use error::{X509Error, rfc3339};
pub use tls::{TlsError, verify_server_certificate};
pub use verify::{VerifyOptions, build, chain_allows_server_auth, verify};

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    use time::OffsetDateTime;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).expect("time")
    }

    fn ca_params(cn: &str, from: i64, to: i64, ca: bool) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        p.not_before = at(from);
        p.not_after = at(to);
        p.use_authority_key_identifier_extension = true;
        p
    }

    fn root(cn: &str, from: i64, to: i64) -> Ca {
        let params = ca_params(cn, from, to, true);
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("root").der().to_vec();
        Ca { params, key, der }
    }

    fn intermediate(parent: &Ca, cn: &str, from: i64, to: i64, ca: bool) -> Ca {
        let params = ca_params(cn, from, to, ca);
        let key = KeyPair::generate().expect("key");
        let der = params
            .signed_by(&key, &Issuer::from_params(&parent.params, &parent.key))
            .expect("intermediate")
            .der()
            .to_vec();
        Ca { params, key, der }
    }

    fn leaf(parent: &Ca, ip: &str, server_auth: bool, from: i64, to: i64) -> Vec<u8> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "system:node:node-a");
        p.subject_alt_names = vec![SanType::IpAddress(ip.parse().expect("ip"))];
        p.extended_key_usages = vec![if server_auth {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.not_before = at(from);
        p.not_after = at(to);
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        p.signed_by(&key, &Issuer::from_params(&parent.params, &parent.key))
            .expect("leaf")
            .der()
            .to_vec()
    }

    fn pool(ders: &[&[u8]]) -> CertPool {
        let mut p = CertPool::new();
        for d in ders {
            p.add(Certificate::parse(d).expect("parse"));
        }
        p
    }

    /// Go's answer for `chain` (leaf first) dialled at `host` with `roots`.
    fn go(chain: &[&[u8]], roots: &[&[u8]], host: &str) -> Result<(), String> {
        let certs: Vec<Certificate> = chain.iter().map(|d| Certificate::parse(d).expect("parse")).collect();
        verify_server_certificate(&certs, Some(&pool(roots)), host, NOW).map_err(|e| e.to_string())
    }

    fn expired(now: i64, bound: &str, t: i64) -> String {
        format!(
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time {} is {bound} {}",
            rfc3339(now),
            rfc3339(t)
        )
    }

    #[test]
    fn a_healthy_chain_passes_and_a_leaf_in_the_roots_too() {
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let inter = intermediate(&ca, "kubelet-serving", NOW - DAY, NOW + 90 * DAY, true);
        let l = leaf(&inter, "10.0.0.5", true, NOW - DAY, NOW + 30 * DAY);
        assert_eq!(go(&[&l, &inter.der], &[&ca.der], "10.0.0.5"), Ok(()));
        assert_eq!(go(&[&l], &[&l], "10.0.0.5"), Ok(()));
        assert_eq!(
            go(&[&l], &[&ca.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: certificate signed by unknown authority".into())
        );
    }

    #[test]
    fn an_expired_or_future_root_is_refused_as_expired() {
        let old = root("kubernetes", NOW - 30 * DAY, NOW - DAY);
        let l = leaf(&old, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l], &[&old.der], "10.0.0.5"),
            Err(expired(NOW, "after", NOW - DAY))
        );
        let future = root("kubernetes", NOW + DAY, NOW + 30 * DAY);
        let l = leaf(&future, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l], &[&future.der], "10.0.0.5"),
            Err(expired(NOW, "before", NOW + DAY))
        );
    }

    #[test]
    fn an_expired_intermediate_gets_no_suffix() {
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let inter = intermediate(&ca, "kubelet-serving", NOW - 30 * DAY, NOW - 2 * DAY, true);
        let l = leaf(&inter, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l, &inter.der], &[&ca.der], "10.0.0.5"),
            Err(expired(NOW, "after", NOW - 2 * DAY))
        );
    }

    #[test]
    fn key_usage_is_judged_last() {
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let client_only = leaf(&ca, "10.0.0.5", false, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&client_only], &[&ca.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: certificate specifies an incompatible key usage".into())
        );
        assert_eq!(
            go(&[&client_only], &[&ca.der], "10.0.0.6"),
            Err("tls: failed to verify certificate: x509: certificate is valid for 10.0.0.5, not 10.0.0.6".into())
        );
        let other = root("other", NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&client_only], &[&other.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: certificate signed by unknown authority".into())
        );
        let expired_client = leaf(&ca, "10.0.0.5", false, NOW - 2 * DAY, NOW - DAY);
        assert_eq!(
            go(&[&expired_client], &[&ca.der], "10.0.0.6"),
            Err(expired(NOW, "after", NOW - DAY))
        );
    }

    #[test]
    fn a_ca_with_the_right_name_and_another_key_is_named_in_the_hint() {
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let impostor = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let l = leaf(&impostor, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l], &[&ca.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"kubernetes\")".into())
        );
        // With the right CA in the pool too, a chain is found.
        assert_eq!(go(&[&l], &[&ca.der, &impostor.der], "10.0.0.5"), Ok(()));
    }

    #[test]
    fn an_intermediate_that_is_no_ca_cannot_sign() {
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let not_ca = intermediate(&ca, "not-a-ca", NOW - DAY, NOW + DAY, false);
        let l = leaf(&not_ca, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l, &not_ca.der], &[&ca.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of \"x509: invalid signature: parent certificate cannot sign this kind of certificate\" while trying to verify candidate authority certificate \"not-a-ca\")".into())
        );
    }

    #[test]
    fn the_last_candidate_past_its_signature_decides() {
        // An expired copy of the root (same key) and a foreign CA of the same name: the
        // expired one's error stands, the foreign one only ever becomes a hint.
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let l = leaf(&ca, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        let mut old_params = ca_params("kubernetes", NOW - 30 * DAY, NOW - DAY, true);
        old_params.key_identifier_method = ca.params.key_identifier_method.clone();
        let old = old_params.self_signed(&ca.key).expect("old root").der().to_vec();
        let impostor = root("kubernetes", NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l], &[&old, &impostor.der], "10.0.0.5"),
            Err(expired(NOW, "after", NOW - DAY))
        );
        assert_eq!(go(&[&l], &[&old, &ca.der], "10.0.0.5"), Ok(()));
    }

    #[test]
    fn a_ca_that_restricts_usages_makes_the_chain_unusable_for_serving() {
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let mut params = ca_params("client-only-ca", NOW - DAY, NOW + DAY, true);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("key");
        let der = params
            .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
            .expect("intermediate")
            .der()
            .to_vec();
        let inter = Ca { params, key, der };
        let l = leaf(&inter, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l, &inter.der], &[&ca.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: certificate specifies an incompatible key usage".into())
        );
        let chain: Vec<Certificate> = [&l, &inter.der]
            .iter()
            .map(|d| Certificate::parse(d).expect("parse"))
            .collect();
        assert!(chain_allows_server_auth(&[&chain[0]]));
        assert!(!chain_allows_server_auth(&[&chain[0], &chain[1]]));
    }

    #[test]
    fn an_unhandled_critical_extension_is_refused_first() {
        let ca = root("kubernetes", NOW - DAY, NOW + 365 * DAY);
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::IpAddress("10.0.0.5".parse().expect("ip"))];
        p.not_before = at(NOW - 2 * DAY);
        p.not_after = at(NOW - DAY);
        let mut ext = rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 42, 1], vec![0x05, 0x00]);
        ext.set_criticality(true);
        p.custom_extensions.push(ext);
        let key = KeyPair::generate().expect("key");
        let l = p
            .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
            .expect("leaf")
            .der()
            .to_vec();
        assert_eq!(
            go(&[&l], &[&ca.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: unhandled critical extension".into())
        );
    }

    #[test]
    fn a_path_length_constraint_counts_the_intermediates_below() {
        let mut params = ca_params("kubernetes", NOW - DAY, NOW + 365 * DAY, true);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("root").der().to_vec();
        let ca = Ca { params, key, der };
        let inter = intermediate(&ca, "kubelet-serving", NOW - DAY, NOW + DAY, true);
        let l = leaf(&inter, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(
            go(&[&l, &inter.der], &[&ca.der], "10.0.0.5"),
            Err("tls: failed to verify certificate: x509: too many intermediates for path length constraint".into())
        );
        let direct = leaf(&ca, "10.0.0.5", true, NOW - DAY, NOW + DAY);
        assert_eq!(go(&[&direct], &[&ca.der], "10.0.0.5"), Ok(()));
    }
}
