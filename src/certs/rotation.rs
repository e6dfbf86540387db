//! When to renew a certificate, and how long to wait after a failed attempt: the kubelet
//! certificate manager's schedule (client-go util/certificate/certificate_manager.go
//! `nextRotationDeadline`, `jitteryDuration`, and the backoff in `manager.Start`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `NotBefore + jitteryDuration(total)`, where `jitteryDuration(total) = wait.Jitter(total, 0.2)
/// − 0.3·total`: a point uniformly in 70–90 % of the lifetime, so nodes issued together do not
/// all renew together.
///
/// client-go draws the jitter again every time it computes the deadline, so each restart moves
/// it (and a crash loop drags it toward 70 %). Here the jitter is derived from the certificate
/// itself (the first bytes of the SHA-256 of its DER): one certificate has one deadline, whatever
/// restarts in between, and different certificates still spread over the same window.
pub fn deadline(not_before: i64, not_after: i64, leaf_der: &[u8]) -> i64 {
    deadline_at(not_before, not_after, unit_of(leaf_der))
}

/// The deadline for a given jitter `unit` in [0, 1]. Rounded down to the second: a
/// certificate of a few seconds (as tests use) must not get a deadline on its last second.
pub fn deadline_at(not_before: i64, not_after: i64, unit: f64) -> i64 {
    let total = (not_after - not_before).max(0);
    // Per mille, in integers: 700 to 900.
    let permille = 700 + (200.0 * unit.clamp(0.0, 1.0)).floor() as i64;
    not_before + total.saturating_mul(permille) / 1000
}

/// A number in [0, 1] that depends only on `der`.
fn unit_of(der: &[u8]) -> f64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest.as_ref()[..4]);
    f64::from(u32::from_be_bytes(first)) / f64::from(u32::MAX)
}

/// A random number in [0, 1] (0.5 if the system's generator fails).
pub fn random_unit() -> f64 {
    let mut r = [0u8; 4];
    match aws_lc_rs::rand::fill(&mut r) {
        Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whether now is after the Unix second `t` (`now.After(t)` in Go, as the certificate manager
/// judges `notAfter`).
pub fn is_past(t: i64) -> bool {
    let Ok(secs) = u64::try_from(t) else {
        return t < 0;
    };
    SystemTime::now() > UNIX_EPOCH + Duration::from_secs(secs)
}

/// The certificate manager's retries after a failed attempt: `wait.ExponentialBackoff`
/// (2 s, ×2, jitter 0.1, 5 steps), then `wait.PollInfinite` at the last step's 32 s. `initial`
/// is 2 s in production; the polling interval is always 16 × `initial`.
#[derive(Debug, Clone)]
pub struct RetryBackoff {
    initial: Duration,
    attempt: u32,
}

impl RetryBackoff {
    /// The exponential steps before polling at the last one.
    const STEPS: u32 = 5;

    pub fn new(initial: Duration) -> RetryBackoff {
        RetryBackoff { initial, attempt: 0 }
    }

    /// The wait before the next attempt: `initial × 2^n` plus up to a tenth of it, `n` capped
    /// at the last exponential step.
    pub fn next_delay(&mut self) -> Duration {
        let n = self.attempt.min(Self::STEPS - 1);
        self.attempt = self.attempt.saturating_add(1);
        let base = self.initial.saturating_mul(1 << n);
        base + base.mul_f64(0.1 * random_unit())
    }

    /// After a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_land_between_70_and_90_percent() {
        assert_eq!(deadline_at(1000, 2000, 0.0), 1700);
        assert_eq!(deadline_at(1000, 2000, 1.0), 1900);
        assert_eq!(deadline_at(1000, 2000, 0.5), 1800);
        for i in 0u32..200 {
            let d = deadline(0, 100_000, &i.to_be_bytes());
            assert!((70_000..=90_000).contains(&d), "{d}");
            assert!(deadline(0, 5, &i.to_be_bytes()) < 5, "never the last second");
        }
    }

    #[test]
    fn one_certificate_has_one_deadline_and_different_ones_spread() {
        let a = deadline(0, 1_000_000, b"certificate a");
        assert_eq!(
            a,
            deadline(0, 1_000_000, b"certificate a"),
            "a restart does not move it"
        );
        let spread: std::collections::BTreeSet<i64> =
            (0u32..50).map(|i| deadline(0, 1_000_000, &i.to_le_bytes())).collect();
        assert!(spread.len() > 40, "{spread:?}");
    }

    #[test]
    fn backoff_doubles_for_five_steps_then_polls_and_resets() {
        let mut b = RetryBackoff::new(Duration::from_secs(2));
        for base in [2u64, 4, 8, 16, 32, 32, 32] {
            let d = b.next_delay().as_secs_f64();
            assert!(d >= base as f64 && d <= base as f64 * 1.1 + 0.001, "{d} for {base}");
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(2201));
    }
}
