//! The per-process secret behind every keyed hash of a token (the TokenReview cache keys, the
//! token hash in audit records), drawn from the operating system's random generator.

use aws_lc_rs::error::Unspecified;
use aws_lc_rs::hmac;

/// The random generator failed. The gateway refuses to start rather than fall back to anything
/// predictable: with a guessable key anyone could precompute the hashes and match tokens.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed; refusing to start without a secret key")]
pub struct RandomError;

/// A fresh HMAC-SHA256 key for this process.
pub fn hmac_key() -> Result<hmac::Key, RandomError> {
    hmac_key_from(aws_lc_rs::rand::fill)
}

fn hmac_key_from(fill: impl FnOnce(&mut [u8]) -> Result<(), Unspecified>) -> Result<hmac::Key, RandomError> {
    let mut secret = [0u8; 32];
    fill(&mut secret).map_err(|_| RandomError)?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_generator_is_an_error_not_a_fallback() {
        assert!(hmac_key_from(|_| Err(Unspecified)).is_err());
    }

    #[test]
    fn keys_come_from_the_generator() {
        let a = hmac_key_from(|b| {
            b.fill(7);
            Ok(())
        })
        .expect("key");
        let b = hmac_key_from(|b| {
            b.fill(7);
            Ok(())
        })
        .expect("key");
        let sign = |k: &hmac::Key| hmac::sign(k, b"token").as_ref().to_vec();
        assert_eq!(sign(&a), sign(&b), "the key is the generator's bytes");
        let fresh = hmac_key().expect("the system generator works here");
        assert_ne!(sign(&fresh), sign(&a));
    }
}
