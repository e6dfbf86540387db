//! The monotonic clock the caches read. Production uses `Instant::now()`; tests move a manual
//! clock forward to cross a TTL without sleeping. Being monotonic, a wall-clock step never
//! expires or extends a cache entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Extra time added to the real monotonic clock; only a manual clock has one.
    offset: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The real monotonic clock.
    pub fn system() -> Clock {
        Clock { offset: None }
    }

    /// A clock that runs with real time but can also be moved forward with [`Clock::advance`].
    pub fn manual() -> Clock {
        Clock {
            offset: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    pub fn now(&self) -> Instant {
        let now = Instant::now();
        match &self.offset {
            None => now,
            Some(o) => now + Duration::from_nanos(o.load(Ordering::Relaxed)),
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(o) = &self.offset {
            o.fetch_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_forward_and_system_clock_does_not() {
        let manual = Clock::manual();
        let before = manual.now();
        manual.advance(Duration::from_secs(121));
        assert!(manual.now() - before >= Duration::from_secs(121));
        let system = Clock::system();
        let before = system.now();
        system.advance(Duration::from_secs(3600));
        assert!(system.now() - before < Duration::from_secs(60));
    }
}
