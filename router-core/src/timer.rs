//! One table for every periodic job; [`TimerTable::next`] is the exact next deadline.

use core::cmp::Reverse;
use std::collections::{binary_heap, btree_map, hash_map, BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;

use rustc_hash::FxHashMap;

use crate::peer::ConnId;
use crate::time::Instant;

/// A job that runs at a deadline.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
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
    /// The address allocator's next step.
    Ipam,
    /// A per-connection job.
    Conn(ConnId, ConnTimer),
}

/// Per-connection jobs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
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
    /// A round of path MTU probes ends, or the path MTU is due to be checked again.
    Pmtu,
}

const CONN_TIMERS: [ConnTimer; 6] = [
    ConnTimer::Handshake,
    ConnTimer::TcpHeartbeat,
    ConnTimer::TcpTimeout,
    ConnTimer::UdpHeartbeat,
    ConnTimer::UdpTimeout,
    ConnTimer::Pmtu,
];

/// A job other than a redial as a number that sorts as the job does: its variant in the top
/// byte, then a connection's id and job. Redials are kept apart (see [`TimerTable`]).
fn code(t: Timer) -> u64 {
    match t {
        Timer::GossipFlush => 0,
        Timer::AntiEntropy => 1 << 56,
        Timer::MacSweep => 2 << 56,
        Timer::Routes => 3 << 56,
        Timer::Redial(_) => REDIAL,
        Timer::Conn(id, k) => 5 << 56 | u64::from(id.0) << 8 | k as u64,
        Timer::Ipam => 6 << 56,
    }
}

/// Where redials sort among the other jobs' numbers (between `Routes` and `Conn`).
const REDIAL: u64 = 4 << 56;

fn decode(c: u64) -> Timer {
    match c >> 56 {
        0 => Timer::GossipFlush,
        1 => Timer::AntiEntropy,
        2 => Timer::MacSweep,
        3 => Timer::Routes,
        6 => Timer::Ipam,
        v => {
            debug_assert_eq!(v, 5, "redials never enter the heap");
            Timer::Conn(ConnId((c >> 8) as u32), CONN_TIMERS[(c & 0xff) as usize])
        }
    }
}

/// Deadlines ordered by (time, job), so equal deadlines fire in a fixed order.
///
/// Re-arming is the common operation (every heartbeat, every datagram's liveness deadline),
/// so it touches the heap as little as it can. Each armed job has one heap entry that
/// carries it, at or before its deadline. Moving a deadline later only records it: the
/// carrier stays, and when it reaches the top it is put back at the deadline (or the job
/// fires there, if it has not moved). Moving it before its carrier pushes a new carrier;
/// the old entry stays in the heap, stale, until it reaches the top and is discarded. The
/// top is always a live entry, at its job's deadline, so [`TimerTable::next`] is exact. A
/// deadline pushed later again and again (a liveness check that every heartbeat moves)
/// costs one lookup each time and one heap operation per time it reaches the top. Jobs are
/// kept as 8-byte numbers (see `code`), so a heap entry is 16 bytes: the heap and the table
/// of a router are touched for nearly every datagram, and with a thousand routers in one
/// process they are rarely in cache. Redials, which carry an address and are rare, are kept
/// apart in order of (deadline, address).
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    armed: FxHashMap<u64, Armed>,
    redials: BTreeSet<(Instant, SocketAddr)>,
    redial_at: BTreeMap<SocketAddr, Instant>,
}

/// An armed job: its deadline, and the time of the heap entry that carries it (never later).
#[derive(Debug, Clone, Copy)]
struct Armed {
    at: Instant,
    carrier: Instant,
}

impl TimerTable {
    /// Arms `timer` at `at`, replacing any earlier setting.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.arm(timer, at, false);
    }

    /// Arms `timer` at `at` unless it is already armed earlier.
    pub(crate) fn set_if_earlier(&mut self, timer: Timer, at: Instant) {
        self.arm(timer, at, true);
    }

    /// Arms `timer` at `at` (`only_earlier`: unless it is armed at or before `at`), with
    /// one lookup of the job: re-arming runs for nearly every datagram.
    fn arm(&mut self, timer: Timer, at: Instant, only_earlier: bool) {
        // Kept: armed at `at` already, or earlier when only an earlier deadline may replace it.
        let keep = |old: Instant| old == at || (only_earlier && old < at);
        if let Timer::Redial(addr) = timer {
            match self.redial_at.entry(addr) {
                btree_map::Entry::Occupied(o) if keep(*o.get()) => return,
                btree_map::Entry::Occupied(mut o) => {
                    let old = o.insert(at);
                    self.redials.remove(&(old, addr));
                }
                btree_map::Entry::Vacant(v) => {
                    v.insert(at);
                }
            }
            self.redials.insert((at, addr));
            return;
        }
        let c = code(timer);
        match self.armed.entry(c) {
            hash_map::Entry::Occupied(o) if keep(o.get().at) => return,
            hash_map::Entry::Occupied(mut o) => {
                let a = o.get_mut();
                a.at = at;
                if at >= a.carrier {
                    // Still carried by its entry; if that is the top, the top is now early.
                    let carrier = a.carrier;
                    if at > carrier {
                        self.discard_if_top(carrier, c);
                    }
                    return;
                }
                // Before its carrier: a new one, which the old (now stale) follows.
                a.carrier = at;
            }
            hash_map::Entry::Vacant(v) => {
                v.insert(Armed { at, carrier: at });
            }
        }
        self.heap.push(Reverse((at, c)));
        if self.heap.len() > 2 * self.armed.len() + 16 {
            // Too many stale entries: rebuild from the live ones.
            self.heap = self
                .armed
                .iter_mut()
                .map(|(&c, a)| {
                    a.carrier = a.at;
                    Reverse((a.at, c))
                })
                .collect();
        }
    }

    /// The entry `(at, c)` no longer fires at its time: if it is the top, moves the top on to
    /// a live one. The top was live before, and only this entry changed, so nothing else
    /// needs a look.
    fn discard_if_top(&mut self, at: Instant, c: u64) {
        if self.heap.peek() == Some(&Reverse((at, c))) {
            self.discard_stale();
        }
    }

    /// Disarms `timer`.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        if let Timer::Redial(addr) = timer {
            if let Some(old) = self.redial_at.remove(&addr) {
                self.redials.remove(&(old, addr));
            }
        } else {
            let c = code(timer);
            if let Some(old) = self.armed.remove(&c) {
                self.discard_if_top(old.carrier, c);
            }
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
        match timer {
            Timer::Redial(addr) => self.redial_at.get(&addr).copied(),
            t => self.armed.get(&code(t)).map(|a| a.at),
        }
    }

    /// The earliest job and its deadline, with redials in their place among the others.
    fn first(&self) -> Option<(Instant, u64, Option<SocketAddr>)> {
        let job = self.heap.peek().map(|&Reverse((at, c))| (at, c, None));
        let redial = self.redials.first().map(|&(at, a)| (at, REDIAL, Some(a)));
        match (job, redial) {
            (Some(j), Some(r)) => Some(if (r.0, r.1) < (j.0, j.1) { r } else { j }),
            (j, r) => j.or(r),
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.first().map(|(at, _, _)| at)
    }

    /// Removes and returns the earliest job due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (at, c, redial) = self.first()?;
        if at > now {
            return None;
        }
        if let Some(addr) = redial {
            self.redials.pop_first();
            self.redial_at.remove(&addr);
            return Some(Timer::Redial(addr));
        }
        self.heap.pop();
        self.armed.remove(&c);
        self.discard_stale();
        Some(decode(c))
    }

    /// Moves the top on until it is live: pops entries that carry no job, and puts a carrier
    /// whose job moved later back at the job's deadline.
    fn discard_stale(&mut self) {
        while let Some(mut top) = self.heap.peek_mut() {
            let Reverse((t, c)) = *top;
            match self.armed.get_mut(&c) {
                Some(a) if a.carrier == t => {
                    if a.at == t {
                        return;
                    }
                    a.carrier = a.at;
                    // Sifted down into place when `top` is dropped.
                    *top = Reverse((a.at, c));
                }
                _ => {
                    binary_heap::PeekMut::pop(top);
                }
            }
        }
    }

    /// Number of armed jobs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.armed.len() + self.redial_at.len()
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
        match i % 10 {
            0 => Timer::GossipFlush,
            1 => Timer::AntiEntropy,
            2 => Timer::Routes,
            3 => Timer::MacSweep,
            4 => Timer::Redial(SocketAddr::from(([10, 0, 0, i / 10], 6783))),
            k => Timer::Conn(ConnId(u32::from(i / 10) * 1000), CONN_TIMERS[usize::from(k - 5)]),
        }
    }

    proptest! {
        #[test]
        fn behaves_like_an_ordered_set_of_jobs(ops in proptest::collection::vec((0u8..4, 0u8..30, 0u64..50), 1..300)) {
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
