//! Which connections the listener holds: at most `limits.maxConnections` in all and
//! `limits.maxConnectionsPerPeer` from one source address. At the cap, the oldest connection
//! that has not yet sent a request (an unfinished handshake, a silent client) is told to go to
//! make room, so clients that never send anything cannot keep a client that does out; only
//! when every connection has sent a request is a newcomer refused. The cap sits below the
//! process's file-descriptor limit (see [`fit_to_descriptor_limit`]), so the ops listener, the
//! upstream connections and the log files of the requests already admitted always find one.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, oneshot};

use crate::ops::metrics::ConnectionStats;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every connection slot holds a connection that has sent a request.
    Full,
    /// The source address holds its share already.
    PeerFull,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Full => "limit",
            Refused::PeerFull => "peer_limit",
        }
    }
}

pub struct Admission {
    max: usize,
    per_peer: usize,
    state: Mutex<State>,
    empty: Notify,
    stats: Arc<ConnectionStats>,
}

#[derive(Default)]
struct State {
    open: usize,
    peers: HashMap<IpAddr, usize>,
    /// Connections with no request yet, oldest first, with the way to tell each to go.
    unproven: BTreeMap<u64, oneshot::Sender<()>>,
    next: u64,
}

impl Admission {
    pub fn new(max: usize, per_peer: usize, stats: Arc<ConnectionStats>) -> Arc<Admission> {
        Arc::new(Admission {
            max,
            per_peer,
            state: Mutex::new(State::default()),
            empty: Notify::new(),
            stats,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection from `peer`, or why there is none.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refused> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.state();
        if state.peers.get(&peer).copied().unwrap_or(0) >= self.per_peer {
            return Err(Refused::PeerFull);
        }
        if state.open >= self.max {
            // The evicted connection gives its slot back when its task ends, a moment later.
            match state.unproven.pop_first() {
                Some((_, go)) => {
                    let _ = go.send(());
                    self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => return Err(Refused::Full),
            }
        }
        state.open += 1;
        *state.peers.entry(peer).or_default() += 1;
        let id = state.next;
        state.next += 1;
        state.unproven.insert(id, tx);
        self.stats.open.store(state.open as u64, Ordering::Relaxed);
        Ok(Permit {
            admission: self.clone(),
            id,
            peer,
            evicted: Some(rx),
        })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.state().open
    }

    /// Resolves once no connection is held.
    pub async fn drained(&self) {
        loop {
            let notified = self.empty.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted connection's slot, given back when dropped.
pub struct Permit {
    admission: Arc<Admission>,
    id: u64,
    peer: IpAddr,
    evicted: Option<oneshot::Receiver<()>>,
}

impl Permit {
    /// The connection sent a request: it is never evicted from now on.
    pub fn proven(&self) {
        self.admission.state().unproven.remove(&self.id);
    }

    /// Resolves when the connection is told to go to make room (never, once proven).
    pub fn evicted(&mut self) -> oneshot::Receiver<()> {
        self.evicted.take().unwrap_or_else(|| oneshot::channel().1)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let admission = &self.admission;
        let mut state = admission.state();
        state.unproven.remove(&self.id);
        state.open = state.open.saturating_sub(1);
        if let Some(n) = state.peers.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                state.peers.remove(&self.peer);
            }
        }
        admission.stats.open.store(state.open as u64, Ordering::Relaxed);
        if state.open == 0 {
            admission.empty.notify_waiters();
        }
    }
}

/// `max` lowered, when it must be, to leave `reserve` descriptors of the process's soft
/// `RLIMIT_NOFILE` (read from /proc/self/limits) for everything but client connections.
/// Returns the cap and, when it was lowered, the limit that lowered it.
pub fn fit_to_descriptor_limit(max: usize, reserve: usize) -> (usize, Option<u64>) {
    let Some(soft) = descriptor_limit() else {
        return (max, None);
    };
    let room = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve)
        .max(1);
    match room < max {
        true => (room, Some(soft)),
        false => (max, None),
    }
}

fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_peer: usize) -> Arc<Admission> {
        Admission::new(max, per_peer, Arc::new(ConnectionStats::default()))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_peer_gets_its_share_and_no_more() {
        let a = admission(10, 2);
        let _one = a.admit(A).expect("one");
        let _two = a.admit(A).expect("two");
        assert_eq!(a.admit(A).err(), Some(Refused::PeerFull));
        let _other = a.admit(B).expect("another peer");
        drop(_one);
        let _three = a.admit(A).expect("a slot given back");
    }

    #[test]
    fn at_the_cap_the_oldest_silent_connection_makes_room_and_proven_ones_stay() {
        let a = admission(2, 2);
        let mut silent = a.admit(A).expect("silent");
        let talking = a.admit(B).expect("talking");
        talking.proven();
        let mut gone = silent.evicted();
        let _newcomer = a.admit(B).expect("room made");
        assert!(gone.try_recv().is_ok(), "the silent one was told to go");
        assert_eq!(a.stats.evicted.load(Ordering::Relaxed), 1);
        drop(silent);
        // Now every connection has sent a request (the newcomer is still silent: it goes).
        let mut newest = a.admit(A).expect("the newcomer makes room");
        assert!(newest.evicted().try_recv().is_err());
        newest.proven();
        drop(_newcomer);
        assert_eq!(a.open(), 2);
        assert_eq!(a.admit(A).err(), Some(Refused::Full), "every slot has sent a request");
    }

    #[tokio::test]
    async fn drained_resolves_when_the_last_connection_goes() {
        let a = admission(4, 4);
        let p = a.admit(A).expect("one");
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.drained().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(p);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("drained")
            .expect("task");
    }

    #[test]
    fn the_cap_leaves_room_under_the_descriptor_limit() {
        let (cap, lowered) = fit_to_descriptor_limit(usize::MAX, 256);
        if let Some(soft) = lowered {
            assert_eq!(cap as u64, soft.saturating_sub(256).max(1));
        }
        assert_eq!(fit_to_descriptor_limit(1, 0), (1, None));
    }
}
