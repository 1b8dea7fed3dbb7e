//! One table for every periodic job; [`TimerTable::next`] is the exact next deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use rustc_hash::FxHashMap;

use crate::peer::ConnId;
use crate::time::Instant;

/// A job that runs at a deadline.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) enum Timer {
    /// Send the coalesced triggered gossip.
    GossipFlush,
    /// Periodic anti-entropy and garbage collection of unreachable peers.
    AntiEntropy,
    /// Expire idle MAC entries.
    MacSweep,
    /// Recompute routes after topology changes.
    Routes,
    /// Dial a target again.
    Redial(SocketAddr),
    /// A per-connection job.
    Conn(ConnId, ConnTimer),
}

/// Per-connection jobs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) enum ConnTimer {
    /// The handshake must finish by now.
    Handshake,
    /// Send a TCP heartbeat.
    TcpHeartbeat,
    /// Nothing received on TCP for too long.
    TcpTimeout,
    /// Send a UDP heartbeat.
    UdpHeartbeat,
    /// Check UDP liveness in both directions.
    UdpTimeout,
}

const CONN_TIMERS: [ConnTimer; 5] = [
    ConnTimer::Handshake,
    ConnTimer::TcpHeartbeat,
    ConnTimer::TcpTimeout,
    ConnTimer::UdpHeartbeat,
    ConnTimer::UdpTimeout,
];

/// Deadlines ordered by (time, job), so equal deadlines fire in a fixed order.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    by_deadline: BTreeSet<(Instant, Timer)>,
    by_timer: FxHashMap<Timer, Instant>,
}

impl TimerTable {
    /// Arms `timer` at `at`, replacing any earlier setting.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(old) = self.by_timer.insert(timer, at) {
            self.by_deadline.remove(&(old, timer));
        }
        self.by_deadline.insert((at, timer));
    }

    /// Arms `timer` at `at` unless it is already armed earlier.
    pub(crate) fn set_if_earlier(&mut self, timer: Timer, at: Instant) {
        match self.by_timer.get(&timer) {
            Some(&old) if old <= at => {}
            _ => self.set(timer, at),
        }
    }

    /// Disarms `timer`.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        if let Some(old) = self.by_timer.remove(&timer) {
            self.by_deadline.remove(&(old, timer));
        }
    }

    /// Disarms every job of a connection.
    pub(crate) fn cancel_conn(&mut self, conn: ConnId) {
        for t in CONN_TIMERS {
            self.cancel(Timer::Conn(conn, t));
        }
    }

    /// When `timer` fires, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.by_timer.get(&timer).copied()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(at, _)| at)
    }

    /// Removes and returns the earliest job due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.by_deadline.first()?;
        if at > now {
            return None;
        }
        self.by_deadline.pop_first();
        self.by_timer.remove(&timer);
        Some(timer)
    }

    /// Number of armed jobs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_timer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_and_rearming_moves_a_job() {
        let mut t = TimerTable::default();
        t.set(Timer::AntiEntropy, Instant::from_millis(30));
        t.set(Timer::GossipFlush, Instant::from_millis(10));
        t.set(Timer::MacSweep, Instant::from_millis(20));
        t.set(Timer::GossipFlush, Instant::from_millis(40));
        t.set_if_earlier(Timer::MacSweep, Instant::from_millis(25));
        assert_eq!(t.next(), Some(Instant::from_millis(20)));
        assert_eq!(t.pop_due(Instant::from_millis(19)), None);
        let now = Instant::from_millis(100);
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(now)).collect();
        assert_eq!(order, vec![Timer::MacSweep, Timer::AntiEntropy, Timer::GossipFlush]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn cancelling_a_connection_removes_all_its_jobs() {
        let mut t = TimerTable::default();
        for (i, k) in CONN_TIMERS.into_iter().enumerate() {
            t.set(Timer::Conn(ConnId(1), k), Instant::from_millis(i as u64));
        }
        t.set(Timer::Conn(ConnId(2), ConnTimer::Handshake), Instant::from_millis(9));
        t.cancel_conn(ConnId(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t.next(), Some(Instant::from_millis(9)));
    }
}
