//! What Go's TLS client does around `Verify` (golang/go src/crypto/tls/handshake_client.go
//! `verifyServerCertificate`, `checkKeySize`; src/crypto/tls/common.go
//! `CertificateVerificationError`; src/crypto/tls/defaults.go
//! `defaultSupportedSignatureAlgorithms`): RSA keys over 8192 bits refused whatever the
//! verification, the server's intermediates taken from the handshake, the error prefixed with
//! `tls: failed to verify certificate: `, and the signature schemes a Go client offers.

use rustls::SignatureScheme;

use super::certificate::{CertPool, Certificate};
use super::error::X509Error;
use super::rsa::Hash;
use super::signature::HandshakeSignature;
use super::verify::{VerifyOptions, verify};

/// `defaultMaxRSAKeySize`.
pub const MAX_RSA_KEY_SIZE: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("tls: failed to parse certificate from server: {0}")]
    Parse(String),
    #[error("tls: server sent certificate containing RSA key larger than {MAX_RSA_KEY_SIZE} bits")]
    RsaKeyTooLarge,
    /// `CertificateVerificationError`.
    #[error("tls: failed to verify certificate: {0}")]
    Verify(X509Error),
}

/// `verifyServerCertificate`. `roots` is `None` when the client does not verify
/// (`InsecureSkipVerify`, kube-apiserver without `--kubelet-certificate-authority`).
pub fn verify_server_certificate(
    certs: &[Certificate],
    roots: Option<&CertPool>,
    server_name: &str,
    now: i64,
) -> Result<(), TlsError> {
    if certs
        .iter()
        .any(|c| c.public_key.rsa_bits().is_some_and(|bits| bits > MAX_RSA_KEY_SIZE))
    {
        return Err(TlsError::RsaKeyTooLarge);
    }
    let (Some(roots), Some((leaf, rest))) = (roots, certs.split_first()) else {
        return Ok(());
    };
    let mut intermediates = CertPool::new();
    for c in rest {
        intermediates.add(c.clone());
    }
    let opts = VerifyOptions {
        dns_name: server_name,
        roots,
        intermediates: &intermediates,
        now,
    };
    verify(leaf, &opts).map(|_| ()).map_err(TlsError::Verify)
}

/// The schemes a Go client offers, in its order.
pub const SUPPORTED_SCHEMES: [SignatureScheme; 12] = [
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::RSA_PKCS1_SHA1,
    SignatureScheme::ECDSA_SHA1_Legacy,
];

/// `typeAndHashFromSignatureScheme`, for the schemes offered.
pub fn handshake_signature(scheme: SignatureScheme) -> Option<HandshakeSignature> {
    Some(match scheme {
        SignatureScheme::RSA_PSS_SHA256 => HandshakeSignature::Pss(Hash::Sha256),
        SignatureScheme::RSA_PSS_SHA384 => HandshakeSignature::Pss(Hash::Sha384),
        SignatureScheme::RSA_PSS_SHA512 => HandshakeSignature::Pss(Hash::Sha512),
        SignatureScheme::RSA_PKCS1_SHA1 => HandshakeSignature::Pkcs1(Hash::Sha1),
        SignatureScheme::RSA_PKCS1_SHA256 => HandshakeSignature::Pkcs1(Hash::Sha256),
        SignatureScheme::RSA_PKCS1_SHA384 => HandshakeSignature::Pkcs1(Hash::Sha384),
        SignatureScheme::RSA_PKCS1_SHA512 => HandshakeSignature::Pkcs1(Hash::Sha512),
        SignatureScheme::ECDSA_SHA1_Legacy => HandshakeSignature::Ecdsa(Hash::Sha1),
        SignatureScheme::ECDSA_NISTP256_SHA256 => HandshakeSignature::Ecdsa(Hash::Sha256),
        SignatureScheme::ECDSA_NISTP384_SHA384 => HandshakeSignature::Ecdsa(Hash::Sha384),
        SignatureScheme::ECDSA_NISTP521_SHA512 => HandshakeSignature::Ecdsa(Hash::Sha512),
        SignatureScheme::ED25519 => HandshakeSignature::Ed25519,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_scheme_can_be_verified() {
        for s in SUPPORTED_SCHEMES {
            assert!(handshake_signature(s).is_some(), "{s:?}");
        }
        assert_eq!(handshake_signature(SignatureScheme::ED448), None);
        assert_eq!(
            TlsError::RsaKeyTooLarge.to_string(),
            "tls: server sent certificate containing RSA key larger than 8192 bits"
        );
    }
}
