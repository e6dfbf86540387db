//! Long-lived streams a caller may hold at once: upgraded exec, attach and port-forward
//! tunnels and log responses count against `limits.maxStreamsPerUser` (by user name), and log
//! responses against `limits.maxLogStreamsPerConnection` too (HTTP/2 puts many on one
//! connection). A stream over either is answered 429 before anything is opened; the refusal
//! is counted and its log line throttled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::authn::Connection;
use crate::ops::throttle::Throttle;

static REFUSED_LOG: Throttle = Throttle::new(10);

/// Which cap refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    PerUser,
    PerConnection,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::PerUser => "per_user",
            Refused::PerConnection => "per_connection",
        }
    }
}

#[derive(Debug, Default)]
pub struct QuotaStats {
    pub log_streams_open: AtomicU64,
    pub refused_per_user: AtomicU64,
    pub refused_per_connection: AtomicU64,
}

#[derive(Debug)]
pub struct Quotas {
    per_user: usize,
    per_connection: usize,
    users: Mutex<HashMap<String, usize>>,
    pub stats: Arc<QuotaStats>,
}

impl Quotas {
    pub fn new(per_user: usize, per_connection: usize) -> Arc<Quotas> {
        Arc::new(Quotas {
            per_user,
            per_connection,
            users: Mutex::new(HashMap::new()),
            stats: Arc::default(),
        })
    }

    /// A slot for a log response of `user` on `conn`.
    pub fn log_stream(self: &Arc<Self>, user: &str, conn: &Arc<Connection>) -> Result<Slot, Refused> {
        let open = &conn.log_streams;
        if open.fetch_add(1, Ordering::AcqRel) >= self.per_connection {
            open.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refused(Refused::PerConnection, user));
        }
        match self.take(user) {
            Ok(()) => {
                self.stats.log_streams_open.fetch_add(1, Ordering::Relaxed);
                Ok(Slot {
                    quotas: self.clone(),
                    user: user.to_owned(),
                    connection: Some(conn.clone()),
                })
            }
            Err(refused) => {
                open.fetch_sub(1, Ordering::AcqRel);
                Err(refused)
            }
        }
    }

    /// A slot for an upgraded stream of `user`.
    pub fn tunnel(self: &Arc<Self>, user: &str) -> Result<Slot, Refused> {
        self.take(user)?;
        Ok(Slot {
            quotas: self.clone(),
            user: user.to_owned(),
            connection: None,
        })
    }

    fn take(&self, user: &str) -> Result<(), Refused> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let held = users.entry(user.to_owned()).or_default();
        if *held >= self.per_user {
            drop(users);
            return Err(self.refused(Refused::PerUser, user));
        }
        *held += 1;
        Ok(())
    }

    fn refused(&self, refused: Refused, user: &str) -> Refused {
        let counter = match refused {
            Refused::PerUser => &self.stats.refused_per_user,
            Refused::PerConnection => &self.stats.refused_per_connection,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = REFUSED_LOG.admit() {
            tracing::warn!(
                user,
                limit = refused.as_str(),
                suppressed,
                "stream refused: too many open at once (429)"
            );
        }
        refused
    }

    #[cfg(test)]
    fn held(&self, user: &str) -> usize {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.get(user).copied().unwrap_or(0)
    }
}

/// One stream's place in the quotas, given back when dropped (with the stream's body or
/// tunnel).
pub struct Slot {
    quotas: Arc<Quotas>,
    user: String,
    /// Set for a log stream: it also holds a place on its connection.
    connection: Option<Arc<Connection>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(conn) = &self.connection {
            conn.log_streams.fetch_sub(1, Ordering::AcqRel);
            self.quotas.stats.log_streams_open.fetch_sub(1, Ordering::Relaxed);
        }
        let mut users = self.quotas.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = users.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Arc<Connection> {
        Arc::new(Connection::new(
            "127.0.0.1:1".parse().expect("addr"),
            Default::default(),
        ))
    }

    #[test]
    fn a_user_and_a_connection_each_get_their_share() {
        let q = Quotas::new(3, 2);
        let (a, b) = (conn(), conn());
        let one = q.log_stream("alice", &a).expect("one");
        let _two = q.log_stream("alice", &a).expect("two");
        assert_eq!(q.log_stream("alice", &a).err(), Some(Refused::PerConnection));
        let _three = q.tunnel("alice").expect("a tunnel counts for the user only");
        assert_eq!(q.log_stream("alice", &b).err(), Some(Refused::PerUser));
        let _bob = q.log_stream("bob", &b).expect("another user");
        drop(one);
        let _again = q.log_stream("alice", &b).expect("a slot given back");
        assert_eq!(q.held("alice"), 3);
        assert_eq!(q.stats.refused_per_connection.load(Ordering::Relaxed), 1);
        assert_eq!(q.stats.refused_per_user.load(Ordering::Relaxed), 1);
        assert_eq!(q.stats.log_streams_open.load(Ordering::Relaxed), 3);
    }
}
