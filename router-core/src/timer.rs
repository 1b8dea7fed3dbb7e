//! One table for every periodic job; [`TimerTable::next`] is the exact next deadline.

use core::cmp::Reverse;
use std::collections::BinaryHeap;
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
///
/// Re-arming is the common operation (every heartbeat, every datagram's liveness deadline),
/// so it only records the new deadline and pushes it onto a heap: the entry it replaces stays
/// in the heap, stale, until it reaches the top and is discarded. The top is always a live
/// entry, so [`TimerTable::next`] is exact.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    armed: FxHashMap<Timer, Instant>,
}

impl TimerTable {
    /// Arms `timer` at `at`, replacing any earlier setting.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        if self.armed.insert(timer, at) == Some(at) {
            return;
        }
        self.heap.push(Reverse((at, timer)));
        if self.heap.len() > 2 * self.armed.len() + 16 {
            // Too many stale entries: rebuild from the live ones.
            self.heap = self.armed.iter().map(|(&t, &at)| Reverse((at, t))).collect();
        }
        self.discard_stale();
    }

    /// Arms `timer` at `at` unless it is already armed earlier.
    pub(crate) fn set_if_earlier(&mut self, timer: Timer, at: Instant) {
        match self.armed.get(&timer) {
            Some(&old) if old <= at => {}
            _ => self.set(timer, at),
        }
    }

    /// Disarms `timer`.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        if self.armed.remove(&timer).is_some() {
            self.discard_stale();
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
        self.armed.get(&timer).copied()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest job due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &Reverse((at, timer)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.armed.remove(&timer);
        self.discard_stale();
        Some(timer)
    }

    /// Pops heap entries that no longer match their job's deadline, so the top is live.
    fn discard_stale(&mut self) {
        while let Some(&Reverse((at, timer))) = self.heap.peek() {
            if self.armed.get(&timer) == Some(&at) {
                return;
            }
            self.heap.pop();
        }
    }

    /// Number of armed jobs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// The obvious table: every job once, ordered by (deadline, job).
    #[derive(Default)]
    struct Model {
        by_deadline: BTreeSet<(Instant, Timer)>,
        by_timer: BTreeMap<Timer, Instant>,
    }

    impl Model {
        fn set(&mut self, t: Timer, at: Instant) {
            if let Some(old) = self.by_timer.insert(t, at) {
                self.by_deadline.remove(&(old, t));
            }
            self.by_deadline.insert((at, t));
        }
        fn cancel(&mut self, t: Timer) {
            if let Some(old) = self.by_timer.remove(&t) {
                self.by_deadline.remove(&(old, t));
            }
        }
        fn pop_due(&mut self, now: Instant) -> Option<Timer> {
            let &(at, t) = self.by_deadline.first()?;
            (at <= now).then(|| {
                self.by_deadline.pop_first();
                self.by_timer.remove(&t);
                t
            })
        }
    }

    fn job(i: u8) -> Timer {
        match i % 8 {
            0 => Timer::GossipFlush,
            1 => Timer::AntiEntropy,
            2 => Timer::Routes,
            k => Timer::Conn(ConnId(u32::from(i / 8)), CONN_TIMERS[usize::from(k - 3)]),
        }
    }

    proptest! {
        #[test]
        fn behaves_like_an_ordered_set_of_jobs(ops in proptest::collection::vec((0u8..4, 0u8..24, 0u64..50), 1..300)) {
            let (mut t, mut m) = (TimerTable::default(), Model::default());
            let mut now = 0;
            for (op, j, d) in ops {
                let (job, at) = (job(j), Instant::from_millis(now + d));
                match op {
                    0 => { t.set(job, at); m.set(job, at); }
                    1 => {
                        t.set_if_earlier(job, at);
                        if m.by_timer.get(&job).is_none_or(|&old| at < old) { m.set(job, at); }
                    }
                    2 => { t.cancel(job); m.cancel(job); }
                    _ => {
                        now += d;
                        let now = Instant::from_millis(now);
                        loop {
                            let (a, b) = (t.pop_due(now), m.pop_due(now));
                            prop_assert_eq!(a, b);
                            if a.is_none() { break; }
                        }
                    }
                }
                prop_assert_eq!(t.next(), m.by_deadline.first().map(|&(at, _)| at));
                prop_assert_eq!(t.get(job), m.by_timer.get(&job).copied());
                prop_assert_eq!(t.len(), m.by_timer.len());
                prop_assert!(t.heap.len() <= 2 * t.armed.len() + 17, "stale entries are bounded");
            }
        }
    }

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
