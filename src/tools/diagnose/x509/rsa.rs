//! RSA signature verification as Go's `crypto/rsa` does it (golang/go src/crypto/rsa/fips.go
//! `VerifyPKCS1v15`, `VerifyPSS`; src/crypto/rsa/rsa.go `checkKeySize`): keys of 1024 bits and
//! more, PKCS #1 v1.5 or PSS with the salt as long as the hash.
//!
//! aws-lc-rs verifies what it has an algorithm for; it has none for PSS (nor PKCS #1 v1.5 with
//! SHA-384) below 2048 bits, nor above 8192, which Go accepts. For those, this module does the
//! public-key operation itself (`BigUint::modpow`) and checks the encoding of RFC 8017 §8.2.2 /
//! §9.1.2. Only public data goes through it.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, RsaParameters};
use x509_parser::num_bigint::BigUint;

use super::certificate::bit_len;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Pkcs1,
    Pss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    /// The DER DigestInfo prefix of EMSA-PKCS1-v1_5 (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha1 => &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
            ],
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
                0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
                0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
                0x04, 0x40,
            ],
        }
    }
}

/// What `crypto/rsa` says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaError {
    #[error("crypto/rsa: {0}-bit keys are insecure (see https://go.dev/pkg/crypto/rsa#hdr-Minimum_key_size)")]
    KeyTooSmall(usize),
    #[error("crypto/rsa: verification error")]
    Verification,
}

/// `rsa.VerifyPKCS1v15` / `rsa.VerifyPSS` over `message` (hashed here).
pub fn verify(
    modulus: &[u8],
    exponent: &[u8],
    der: &[u8],
    padding: Padding,
    hash: Hash,
    message: &[u8],
    sig: &[u8],
) -> Result<(), RsaError> {
    let bits = bit_len(modulus);
    if bits < 1024 {
        return Err(RsaError::KeyTooSmall(bits));
    }
    if let Some(params) = aws_parameters(padding, hash, bits) {
        return signature::UnparsedPublicKey::new(params, der)
            .verify(message, sig)
            .map_err(|_| RsaError::Verification);
    }
    let digest = digest::digest(hash.algorithm(), message);
    verify_digest(modulus, exponent, padding, hash, digest.as_ref(), sig)
}

/// The aws-lc-rs algorithm for this padding, hash and key size, when it has one.
fn aws_parameters(padding: Padding, hash: Hash, bits: usize) -> Option<&'static RsaParameters> {
    let params: &'static RsaParameters = match (padding, hash) {
        (Padding::Pkcs1, Hash::Sha1) => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (Padding::Pkcs1, Hash::Sha256) => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        (Padding::Pkcs1, Hash::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (Padding::Pkcs1, Hash::Sha512) => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        (Padding::Pss, Hash::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
        (Padding::Pss, Hash::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
        (Padding::Pss, Hash::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
        (Padding::Pss, Hash::Sha1) => return None,
    };
    let range = params.min_modulus_len() as usize..=8192;
    range.contains(&bits).then_some(params)
}

/// RSAVP1, then EMSA-PKCS1-v1_5 or EMSA-PSS verification of `digest`.
fn verify_digest(
    modulus: &[u8],
    exponent: &[u8],
    padding: Padding,
    hash: Hash,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), RsaError> {
    let k = modulus.len();
    if sig.len() != k {
        return Err(RsaError::Verification);
    }
    let n = BigUint::from_bytes_be(modulus);
    let e = BigUint::from_bytes_be(exponent);
    let s = BigUint::from_bytes_be(sig);
    if s >= n || e < BigUint::from(2u8) {
        return Err(RsaError::Verification);
    }
    let m = s.modpow(&e, &n).to_bytes_be();
    let mut em = vec![0u8; k.saturating_sub(m.len())];
    em.extend_from_slice(&m);
    let ok = match padding {
        Padding::Pkcs1 => pkcs1_matches(&em, hash, digest),
        Padding::Pss => pss_matches(&em, bit_len(modulus) - 1, hash, digest),
    };
    if ok { Ok(()) } else { Err(RsaError::Verification) }
}

fn pkcs1_matches(em: &[u8], hash: Hash, digest: &[u8]) -> bool {
    let prefix = hash.digest_info_prefix();
    let t_len = prefix.len() + digest.len();
    if em.len() < t_len + 11 {
        return false;
    }
    let mut expected = vec![0x00, 0x01];
    expected.resize(em.len() - t_len - 1, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(prefix);
    expected.extend_from_slice(digest);
    expected == em
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with sLen = hLen and MGF1 over the same hash.
fn pss_matches(em: &[u8], em_bits: usize, hash: Hash, m_hash: &[u8]) -> bool {
    let em_len = em_bits.div_ceil(8);
    // The encoded message is the low emLen bytes; the byte above must be zero.
    let Some(extra) = em.len().checked_sub(em_len) else {
        return false;
    };
    if em[..extra].iter().any(|b| *b != 0) {
        return false;
    }
    let em = &em[extra..];
    let h_len = m_hash.len();
    let s_len = h_len;
    if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
        return false;
    }
    let (masked_db, rest) = em.split_at(em_len - h_len - 1);
    let h = &rest[..h_len];
    let unused = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(u32::try_from(unused).unwrap_or(8)).unwrap_or(0);
    if masked_db[0] & !top_mask != 0 {
        return false;
    }
    let mask = mgf1(hash, h, masked_db.len());
    let mut db: Vec<u8> = masked_db.iter().zip(&mask).map(|(a, b)| a ^ b).collect();
    db[0] &= top_mask;
    let ps_len = em_len - h_len - s_len - 2;
    if db[..ps_len].iter().any(|b| *b != 0) || db[ps_len] != 0x01 {
        return false;
    }
    let salt = &db[db.len() - s_len..];
    let mut m_prime = vec![0u8; 8];
    m_prime.extend_from_slice(m_hash);
    m_prime.extend_from_slice(salt);
    digest::digest(hash.algorithm(), &m_prime).as_ref() == h
}

fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut ctx = digest::Context::new(hash.algorithm());
        ctx.update(seed);
        ctx.update(&counter.to_be_bytes());
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::RSAPublicKey;

    fn strip(b: &[u8]) -> Vec<u8> {
        b.iter().copied().skip_while(|x| *x == 0).collect()
    }

    #[test]
    fn the_fallback_verifies_what_aws_lc_rs_signs() {
        let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let der = key.public_key().as_ref().to_vec();
        let (_, parsed) = RSAPublicKey::from_der(&der).expect("RSAPublicKey");
        let (n, e) = (strip(parsed.modulus), strip(parsed.exponent));
        let message = b"kubelet-gate diagnose";
        let rng = SystemRandom::new();
        for (encoding, padding, hash) in [
            (&signature::RSA_PKCS1_SHA256, Padding::Pkcs1, Hash::Sha256),
            (&signature::RSA_PKCS1_SHA384, Padding::Pkcs1, Hash::Sha384),
            (&signature::RSA_PSS_SHA256, Padding::Pss, Hash::Sha256),
            (&signature::RSA_PSS_SHA512, Padding::Pss, Hash::Sha512),
        ] {
            let mut sig = vec![0u8; key.public_modulus_len()];
            key.sign(encoding, &rng, message, &mut sig).expect("sign");
            let digest = digest::digest(hash.algorithm(), message);
            assert_eq!(verify_digest(&n, &e, padding, hash, digest.as_ref(), &sig), Ok(()));
            assert_eq!(verify(&n, &e, &der, padding, hash, message, &sig), Ok(()));
            let other = digest::digest(hash.algorithm(), b"something else");
            assert_eq!(
                verify_digest(&n, &e, padding, hash, other.as_ref(), &sig),
                Err(RsaError::Verification)
            );
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert_eq!(
                verify_digest(&n, &e, padding, hash, digest.as_ref(), &bad),
                Err(RsaError::Verification)
            );
            let wrong_padding = if padding == Padding::Pss {
                Padding::Pkcs1
            } else {
                Padding::Pss
            };
            assert_eq!(
                verify_digest(&n, &e, wrong_padding, hash, digest.as_ref(), &sig),
                Err(RsaError::Verification)
            );
        }
    }

    #[test]
    fn keys_below_1024_bits_are_refused_with_go_s_words() {
        let modulus = vec![0xc5u8; 64];
        assert_eq!(
            verify(&modulus, &[1, 0, 1], &[], Padding::Pkcs1, Hash::Sha256, b"m", &[0; 64]).map_err(|e| e.to_string()),
            Err(
                "crypto/rsa: 512-bit keys are insecure (see https://go.dev/pkg/crypto/rsa#hdr-Minimum_key_size)".into()
            )
        );
        assert!(aws_parameters(Padding::Pss, Hash::Sha256, 1024).is_none());
        assert!(aws_parameters(Padding::Pss, Hash::Sha256, 2048).is_some());
        assert!(aws_parameters(Padding::Pkcs1, Hash::Sha256, 1024).is_some());
        assert!(aws_parameters(Padding::Pkcs1, Hash::Sha256, 8200).is_none());
    }
}
