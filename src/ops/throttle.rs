//! At most so many log lines of one kind per second. A flood of refusals (bad paths, silent
//! connections, refused handshakes) must not become a flood of log: the audit log stays
//! complete, the operator's log gets the first lines of each second and, with the next line
//! logged, how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    per_second: u64,
    state: Mutex<Window>,
}

struct Window {
    start: Option<Instant>,
    logged: u64,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(per_second: u64) -> Throttle {
        Throttle {
            per_second,
            state: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)`: log this line, and say that `n` lines were left out before it. `None`: leave
    /// it out.
    pub fn admit(&self) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if w.start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged >= self.per_second {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lines_of_a_second_pass_and_the_next_one_counts_the_rest() {
        let t = Throttle::new(3);
        let passed: Vec<Option<u64>> = (0..10).map(|_| t.admit()).collect();
        assert_eq!(&passed[..3], &[Some(0), Some(0), Some(0)]);
        assert!(passed[3..].iter().all(Option::is_none));
        std::thread::sleep(Duration::from_millis(1010));
        assert_eq!(t.admit(), Some(7), "the seven left out are reported");
        assert_eq!(t.admit(), Some(0));
    }
}
