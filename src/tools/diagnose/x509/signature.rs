//! Signatures as Go checks them: golang/go src/crypto/x509/x509.go
//! `(*Certificate).CheckSignatureFrom` and `checkSignature` (the `signatureAlgorithmDetails`
//! table: SHA-1 and MD5 refused in certificates, the key type must be the algorithm's), and
//! src/crypto/tls/auth.go `verifyHandshakeSignature` for the TLS handshake. The arithmetic is
//! aws-lc-rs's (and `rsa`'s fallback where aws-lc-rs has no algorithm Go accepts).

use aws_lc_rs::signature::{self, EcdsaVerificationAlgorithm, UnparsedPublicKey};

use super::certificate::{Certificate, Curve, PublicKey, SignatureAlgorithm};
use super::rsa::{self, Hash, Padding, RsaError};

/// The errors `checkSignature` and `CheckSignatureFrom` return, with Go's strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `ErrUnsupportedAlgorithm`.
    #[error("x509: cannot verify signature: algorithm unimplemented")]
    Unsupported,
    /// `InsecureAlgorithmError`.
    #[error("x509: cannot verify signature: insecure algorithm {0}")]
    Insecure(&'static str),
    /// `ConstraintViolationError`.
    #[error("x509: invalid signature: parent certificate cannot sign this kind of certificate")]
    ConstraintViolation,
    /// `signaturePublicKeyAlgoMismatchError`.
    #[error("x509: signature algorithm specifies an {expected} public key, but have public key of type {have}")]
    KeyMismatch { expected: &'static str, have: &'static str },
    #[error(transparent)]
    Rsa(#[from] RsaError),
    #[error("x509: ECDSA verification failure")]
    Ecdsa,
    #[error("x509: Ed25519 verification failure")]
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlgorithm {
    Rsa,
    Dsa,
    Ecdsa,
    Ed25519,
}

impl KeyAlgorithm {
    /// `PublicKeyAlgorithm.String()`.
    fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "RSA",
            KeyAlgorithm::Dsa => "DSA",
            KeyAlgorithm::Ecdsa => "ECDSA",
            KeyAlgorithm::Ed25519 => "Ed25519",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Of(Hash),
    /// Ed25519 signs the message itself.
    None,
}

/// A row of `signatureAlgorithmDetails`: name, key algorithm, hash, PSS.
fn details(algo: SignatureAlgorithm) -> Option<(&'static str, KeyAlgorithm, Digest, bool)> {
    use SignatureAlgorithm as S;
    let (name, key, digest, pss) = match algo {
        S::Unknown => return None,
        S::Md5WithRsa => ("MD5-RSA", KeyAlgorithm::Rsa, Digest::Md5, false),
        S::Sha1WithRsa => ("SHA1-RSA", KeyAlgorithm::Rsa, Digest::Of(Hash::Sha1), false),
        S::Sha256WithRsa => ("SHA256-RSA", KeyAlgorithm::Rsa, Digest::Of(Hash::Sha256), false),
        S::Sha384WithRsa => ("SHA384-RSA", KeyAlgorithm::Rsa, Digest::Of(Hash::Sha384), false),
        S::Sha512WithRsa => ("SHA512-RSA", KeyAlgorithm::Rsa, Digest::Of(Hash::Sha512), false),
        S::Sha256WithRsaPss => ("SHA256-RSAPSS", KeyAlgorithm::Rsa, Digest::Of(Hash::Sha256), true),
        S::Sha384WithRsaPss => ("SHA384-RSAPSS", KeyAlgorithm::Rsa, Digest::Of(Hash::Sha384), true),
        S::Sha512WithRsaPss => ("SHA512-RSAPSS", KeyAlgorithm::Rsa, Digest::Of(Hash::Sha512), true),
        S::DsaWithSha1 => ("DSA-SHA1", KeyAlgorithm::Dsa, Digest::Of(Hash::Sha1), false),
        S::DsaWithSha256 => ("DSA-SHA256", KeyAlgorithm::Dsa, Digest::Of(Hash::Sha256), false),
        S::EcdsaWithSha1 => ("ECDSA-SHA1", KeyAlgorithm::Ecdsa, Digest::Of(Hash::Sha1), false),
        S::EcdsaWithSha256 => ("ECDSA-SHA256", KeyAlgorithm::Ecdsa, Digest::Of(Hash::Sha256), false),
        S::EcdsaWithSha384 => ("ECDSA-SHA384", KeyAlgorithm::Ecdsa, Digest::Of(Hash::Sha384), false),
        S::EcdsaWithSha512 => ("ECDSA-SHA512", KeyAlgorithm::Ecdsa, Digest::Of(Hash::Sha512), false),
        S::PureEd25519 => ("Ed25519", KeyAlgorithm::Ed25519, Digest::None, false),
    };
    Some((name, key, digest, pss))
}

/// `CheckSignatureFrom`: may `parent` have signed `child`?
pub fn check_signature_from(child: &Certificate, parent: &Certificate) -> Result<(), SignatureError> {
    // RFC 5280, 4.2.1.9: a v3 certificate without basic constraints, or with CA:FALSE, does not
    // sign certificates.
    if (parent.version == 3 && !parent.basic_constraints_valid) || (parent.basic_constraints_valid && !parent.is_ca) {
        return Err(SignatureError::ConstraintViolation);
    }
    const KEY_CERT_SIGN: u16 = 1 << 5;
    if parent.key_usage != 0 && parent.key_usage & KEY_CERT_SIGN == 0 {
        return Err(SignatureError::ConstraintViolation);
    }
    if parent.public_key == PublicKey::Unknown {
        return Err(SignatureError::Unsupported);
    }
    check_signature(
        child.signature_algorithm,
        &child.raw_tbs,
        &child.signature,
        &parent.public_key,
        false,
    )
}

/// `checkSignature`: SHA-1 only where `allow_sha1` (never for certificates).
pub fn check_signature(
    algo: SignatureAlgorithm,
    signed: &[u8],
    sig: &[u8],
    key: &PublicKey,
    allow_sha1: bool,
) -> Result<(), SignatureError> {
    let Some((name, key_algorithm, digest, pss)) = details(algo) else {
        return Err(SignatureError::Unsupported);
    };
    let hash = match digest {
        Digest::Md5 => return Err(SignatureError::Insecure(name)),
        Digest::Of(Hash::Sha1) if !allow_sha1 => return Err(SignatureError::Insecure(name)),
        Digest::Of(h) => Some(h),
        Digest::None => None,
    };
    let mismatch = |have: &PublicKey| SignatureError::KeyMismatch {
        expected: key_algorithm.name(),
        have: have.go_type(),
    };
    match key {
        PublicKey::Rsa { modulus, exponent, der } => {
            let Some(hash) = hash.filter(|_| key_algorithm == KeyAlgorithm::Rsa) else {
                return Err(mismatch(key));
            };
            let padding = if pss { Padding::Pss } else { Padding::Pkcs1 };
            Ok(rsa::verify(modulus, exponent, der, padding, hash, signed, sig)?)
        }
        PublicKey::Ecdsa { curve, point } => {
            let Some(hash) = hash.filter(|_| key_algorithm == KeyAlgorithm::Ecdsa) else {
                return Err(mismatch(key));
            };
            ecdsa(*curve, hash, point, signed, sig).ok_or(SignatureError::Ecdsa)
        }
        PublicKey::Ed25519(point) => {
            if key_algorithm != KeyAlgorithm::Ed25519 {
                return Err(mismatch(key));
            }
            UnparsedPublicKey::new(&signature::ED25519, point)
                .verify(signed, sig)
                .map_err(|_| SignatureError::Ed25519)
        }
        PublicKey::Other(_) | PublicKey::Unknown => Err(SignatureError::Unsupported),
    }
}

/// `ecdsa.VerifyASN1` of `hash(message)`: any hash on any curve, as Go allows. `None`: not
/// verified (aws-lc-rs has no P-384 with SHA-1, the one combination missing).
fn ecdsa(curve: Curve, hash: Hash, point: &[u8], message: &[u8], sig: &[u8]) -> Option<()> {
    let algorithm: &'static EcdsaVerificationAlgorithm = match (curve, hash) {
        (Curve::P256, Hash::Sha1) => &signature::ECDSA_P256_SHA1_ASN1,
        (Curve::P256, Hash::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (Curve::P256, Hash::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (Curve::P256, Hash::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
        (Curve::P384, Hash::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (Curve::P384, Hash::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
        (Curve::P384, Hash::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
        (Curve::P384, Hash::Sha1) => return None,
        (Curve::P521, Hash::Sha1) => &signature::ECDSA_P521_SHA1_ASN1,
        (Curve::P521, Hash::Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
        (Curve::P521, Hash::Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
        (Curve::P521, Hash::Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
    };
    UnparsedPublicKey::new(algorithm, point).verify(message, sig).ok()
}

/// How a TLS signature scheme signs (`typeAndHashFromSignatureScheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeSignature {
    Pkcs1(Hash),
    Pss(Hash),
    Ecdsa(Hash),
    Ed25519,
}

/// `verifyHandshakeSignature`: the server's signature over the handshake with its
/// certificate's key. The error is what Go puts after "tls: invalid signature by the server
/// certificate: ".
pub fn verify_handshake_signature(
    kind: HandshakeSignature,
    key: &PublicKey,
    signed: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    match (kind, key) {
        (HandshakeSignature::Ecdsa(hash), PublicKey::Ecdsa { curve, point }) => {
            ecdsa(*curve, hash, point, signed, sig).ok_or_else(|| "ECDSA verification failure".to_owned())
        }
        (HandshakeSignature::Ecdsa(_), k) => Err(format!("expected an ECDSA public key, got {}", k.go_type())),
        (HandshakeSignature::Ed25519, PublicKey::Ed25519(point)) => UnparsedPublicKey::new(&signature::ED25519, point)
            .verify(signed, sig)
            .map_err(|_| "Ed25519 verification failure".to_owned()),
        (HandshakeSignature::Ed25519, k) => Err(format!("expected an Ed25519 public key, got {}", k.go_type())),
        (
            HandshakeSignature::Pkcs1(hash) | HandshakeSignature::Pss(hash),
            PublicKey::Rsa { modulus, exponent, der },
        ) => {
            let padding = if matches!(kind, HandshakeSignature::Pss(_)) {
                Padding::Pss
            } else {
                Padding::Pkcs1
            };
            rsa::verify(modulus, exponent, der, padding, hash, signed, sig).map_err(|e| e.to_string())
        }
        (_, k) => Err(format!("expected an RSA public key, got {}", k.go_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256() -> PublicKey {
        PublicKey::Ecdsa {
            curve: Curve::P256,
            point: vec![4; 65],
        }
    }

    #[test]
    fn refuses_what_go_refuses_before_any_arithmetic() {
        let rsa = PublicKey::Rsa {
            modulus: vec![0xc5; 256],
            exponent: vec![1, 0, 1],
            der: Vec::new(),
        };
        let e = |algo, key: &PublicKey| check_signature(algo, b"tbs", b"sig", key, false).map_err(|e| e.to_string());
        assert_eq!(
            e(SignatureAlgorithm::Sha1WithRsa, &rsa),
            Err("x509: cannot verify signature: insecure algorithm SHA1-RSA".into())
        );
        assert_eq!(
            e(SignatureAlgorithm::EcdsaWithSha1, &p256()),
            Err("x509: cannot verify signature: insecure algorithm ECDSA-SHA1".into())
        );
        assert_eq!(
            e(SignatureAlgorithm::Md5WithRsa, &rsa),
            Err("x509: cannot verify signature: insecure algorithm MD5-RSA".into())
        );
        assert_eq!(
            e(SignatureAlgorithm::Unknown, &rsa),
            Err("x509: cannot verify signature: algorithm unimplemented".into())
        );
        assert_eq!(
            e(SignatureAlgorithm::EcdsaWithSha256, &rsa),
            Err(
                "x509: signature algorithm specifies an ECDSA public key, but have public key of type *rsa.PublicKey"
                    .into()
            )
        );
        assert_eq!(
            e(SignatureAlgorithm::Sha256WithRsa, &p256()),
            Err(
                "x509: signature algorithm specifies an RSA public key, but have public key of type *ecdsa.PublicKey"
                    .into()
            )
        );
        assert_eq!(
            e(SignatureAlgorithm::EcdsaWithSha256, &p256()),
            Err("x509: ECDSA verification failure".into())
        );
        assert_eq!(
            e(SignatureAlgorithm::Sha256WithRsa, &rsa),
            Err("crypto/rsa: verification error".into())
        );
        assert_eq!(
            e(SignatureAlgorithm::DsaWithSha256, &PublicKey::Other("*dsa.PublicKey")),
            Err("x509: cannot verify signature: algorithm unimplemented".into())
        );
        assert_eq!(
            verify_handshake_signature(HandshakeSignature::Pss(Hash::Sha256), &p256(), b"m", b"s"),
            Err("expected an RSA public key, got *ecdsa.PublicKey".into())
        );
    }

    #[test]
    fn a_real_signature_verifies_and_a_foreign_key_does_not() {
        let key = rcgen::KeyPair::generate().expect("key");
        let other = rcgen::KeyPair::generate().expect("key");
        let point = |k: &rcgen::KeyPair| PublicKey::Ecdsa {
            curve: Curve::P256,
            point: k.public_key_raw().to_vec(),
        };
        let sig = rcgen::SigningKey::sign(&key, b"tbs").expect("sign");
        let check = |k: &PublicKey| check_signature(SignatureAlgorithm::EcdsaWithSha256, b"tbs", &sig, k, false);
        assert_eq!(check(&point(&key)), Ok(()));
        assert_eq!(check(&point(&other)), Err(SignatureError::Ecdsa));
        assert_eq!(
            verify_handshake_signature(HandshakeSignature::Ecdsa(Hash::Sha256), &point(&key), b"tbs", &sig),
            Ok(())
        );
    }
}
