//! `limits.tokenReviewsPerSecond` and `limits.tokenReviewsPerSecondPerPeer`: how many
//! TokenReviews the gateway sends for tokens it has not cached. Each distinct token costs one
//! review and only that exact token's answer is cached (threats.md, TokenReview amplification,
//! row DS-08), so without a budget a client inventing tokens turns each of its requests into a
//! call to the API server. Reviews are counted per whole second, in all and per source address;
//! a token over budget is answered 429 without a review, and cached tokens are never counted.
//! Zero turns a bound off. The kubelet has no such budget: a deliberate difference.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::clock::Clock;

/// Which bound refused a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    PerPeer,
    Global,
}

impl Bound {
    pub fn label(self) -> &'static str {
        match self {
            Bound::PerPeer => "per_peer",
            Bound::Global => "global",
        }
    }
}

pub struct ReviewBudget {
    per_second: u32,
    per_peer: u32,
    clock: Clock,
    started: Instant,
    window: Mutex<Window>,
    /// Reviews refused, by [`Bound`]: per peer, global.
    pub refused: [AtomicU64; 2],
}

/// The current second's counts. The peers map holds only the sources seen in this second, so
/// it is as large as one second's distinct addresses and is emptied each second.
#[derive(Default)]
struct Window {
    second: u64,
    total: u32,
    peers: HashMap<IpAddr, u32>,
}

impl ReviewBudget {
    pub fn new(per_second: u32, per_peer: u32, clock: Clock) -> ReviewBudget {
        ReviewBudget {
            per_second,
            per_peer,
            started: clock.now(),
            clock,
            window: Mutex::new(Window::default()),
            refused: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Takes one review from `source`'s budget, or says which bound it is over.
    pub fn take(&self, source: IpAddr) -> Result<(), Bound> {
        let second = self.clock.now().saturating_duration_since(self.started).as_secs();
        self.take_at(source, second)
    }

    fn take_at(&self, source: IpAddr, second: u64) -> Result<(), Bound> {
        if self.per_second == 0 && self.per_peer == 0 {
            return Ok(());
        }
        let verdict = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            if w.second != second {
                w.second = second;
                w.total = 0;
                w.peers.clear();
            }
            let peer = w.peers.get(&source).copied().unwrap_or(0);
            if self.per_peer != 0 && peer >= self.per_peer {
                Err(Bound::PerPeer)
            } else if self.per_second != 0 && w.total >= self.per_second {
                Err(Bound::Global)
            } else {
                w.total += 1;
                w.peers.insert(source, peer + 1);
                Ok(())
            }
        };
        if let Err(bound) = verdict {
            self.refused[bound as usize].fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn each_source_has_its_share_and_all_together_the_total() {
        let b = ReviewBudget::new(5, 3, Clock::manual());
        let taken = |source, second| (0..10).filter(|_| b.take_at(source, second).is_ok()).count();
        assert_eq!(taken(ip(1), 7), 3);
        assert_eq!(b.take_at(ip(1), 7), Err(Bound::PerPeer));
        assert_eq!(taken(ip(2), 7), 2, "the total of 5 leaves 2");
        assert_eq!(b.take_at(ip(3), 7), Err(Bound::Global));
        assert_eq!(b.refused[Bound::PerPeer as usize].load(Ordering::Relaxed), 8);
        assert_eq!(b.refused[Bound::Global as usize].load(Ordering::Relaxed), 9);
        // The next second starts afresh.
        assert_eq!(taken(ip(1), 8), 3);
    }

    #[test]
    fn zero_turns_a_bound_off() {
        let b = ReviewBudget::new(0, 0, Clock::manual());
        assert!((0..10_000).all(|_| b.take(ip(1)).is_ok()));
        let b = ReviewBudget::new(0, 2, Clock::manual());
        assert_eq!((0..10).filter(|_| b.take_at(ip(1), 0).is_ok()).count(), 2);
        assert_eq!((0..10).filter(|_| b.take_at(ip(2), 0).is_ok()).count(), 2);
        let b = ReviewBudget::new(4, 0, Clock::manual());
        assert_eq!((0..10).filter(|_| b.take_at(ip(1), 0).is_ok()).count(), 4);
    }
}
