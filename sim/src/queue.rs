//! The event queue: a timing wheel for the next seconds of virtual time ([`WheelQueue`]) and
//! a radix heap for what lies beyond ([`RadixQueue`]).
//!
//! The simulator never schedules into the past, so the keys it pops only grow: a monotone
//! queue suffices, and a radix heap is one. Bucket `b` holds the entries whose time first
//! differs from a base time in bit `b - 1` (bucket 0: the base time itself); the base is
//! the earliest entry's time. A push is one append. A pop takes from bucket 0; when that is
//! empty, the lowest non-empty bucket is emptied into lower ones around its earliest time,
//! so an entry moves at most once per bit of its distance in time. Every move is a
//! sequential scan, where a binary heap of tens of thousands of entries walks a path of
//! cold cache lines and mispredicted branches on every pop. (A push earlier than the base,
//! possible after a peek, lowers the base and re-sorts the entries it must.)
//!
//! Order is exactly (time, sequence number), as a binary heap of the same entries would
//! pop them: bucket 0 is kept in sequence order (entries pushed while it is non-empty have
//! the largest numbers yet and go to its back; entries moved into it are sorted first).

use std::collections::VecDeque;

use router_core::Instant;

const BUCKETS: usize = 65;
/// Entries' room a bucket keeps once emptied.
const KEEP: usize = 1024;

/// A queued item with its time and sequence number (ties at one time pop in push order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<T> {
    /// When it is due.
    pub at: Instant,
    /// Push order.
    pub seq: u64,
    /// The item.
    pub item: T,
}

/// A monotone priority queue over ([`Instant`], push order).
#[derive(Debug)]
pub struct RadixQueue<T> {
    /// Entries due at `last`, in push order.
    now: VecDeque<Entry<T>>,
    /// Bucket `b` (from 1): entries whose time differs from `last` first in bit `b - 1`.
    buckets: Vec<Vec<Entry<T>>>,
    /// Bit `b` set: bucket `b` is non-empty.
    occupied: u128,
    /// The time buckets are relative to: the earliest entry's, once bucket 0 is filled.
    last: u64,
    /// The time of the last pop: nothing may be pushed before it.
    popped: u64,
    seq: u64,
    len: usize,
}

impl<T> Default for RadixQueue<T> {
    fn default() -> Self {
        RadixQueue {
            now: VecDeque::new(),
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            occupied: 0,
            last: 0,
            popped: 0,
            seq: 0,
            len: 0,
        }
    }
}

fn bucket(at: u64, last: u64) -> usize {
    (u64::BITS - (at ^ last).leading_zeros()) as usize
}

impl<T> RadixQueue<T> {
    /// Queues `item` at `at`, which must not be before the last popped time; returns its
    /// sequence number.
    ///
    /// # Panics
    /// If `at` is earlier than an entry already popped: the simulator clamps times to now.
    pub fn push(&mut self, at: Instant, item: T) -> u64 {
        let t = at.as_micros();
        assert!(t >= self.popped, "an event scheduled before the last one popped");
        if t < self.last {
            // A peek moved the base past now; an earlier entry moves it back.
            self.rebase(t);
        }
        self.seq += 1;
        let e = Entry { at, seq: self.seq, item };
        self.len += 1;
        let b = bucket(t, self.last);
        if b == 0 {
            self.now.push_back(e);
        } else {
            self.buckets[b].push(e);
            self.occupied |= 1u128 << b;
        }
        self.seq
    }

    /// The time of the earliest entry.
    pub fn peek_time(&mut self) -> Option<Instant> {
        self.refill();
        self.now.front().map(|e| e.at)
    }

    /// Removes the earliest entry (the first pushed among the earliest).
    pub fn pop(&mut self) -> Option<Entry<T>> {
        self.refill();
        let e = self.now.pop_front()?;
        self.popped = e.at.as_micros();
        self.len -= 1;
        Some(e)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes `t`, earlier than every entry, the base. Entries that differ from the old base
    /// above the highest bit in which `t` does keep their buckets; the rest move.
    fn rebase(&mut self, t: u64) {
        let k = bucket(t, self.last);
        let mut moving: Vec<Entry<T>> = self.now.drain(..).collect();
        for b in 1..=k {
            moving.append(&mut self.buckets[b]);
            self.occupied &= !(1u128 << b);
        }
        self.last = t;
        for e in moving {
            let nb = bucket(e.at.as_micros(), t);
            debug_assert!(nb > 0, "every entry is later than the new base");
            self.buckets[nb].push(e);
            self.occupied |= 1u128 << nb;
        }
    }

    /// When bucket 0 is empty, moves the earliest time's entries into it.
    fn refill(&mut self) {
        if !self.now.is_empty() || self.occupied == 0 {
            return;
        }
        if self.now.capacity() > KEEP {
            self.now = VecDeque::new();
        }
        let b = self.occupied.trailing_zeros() as usize;
        let mut moving = std::mem::take(&mut self.buckets[b]);
        self.occupied &= !(1u128 << b);
        self.last = moving.iter().map(|e| e.at.as_micros()).min().expect("an occupied bucket has entries");
        for e in moving.drain(..) {
            let nb = bucket(e.at.as_micros(), self.last);
            if nb == 0 {
                self.now.push_back(e);
            } else {
                // Lower than `b`: the entries agreed with the new `last` above bit `b - 1`.
                self.buckets[nb].push(e);
                self.occupied |= 1u128 << nb;
            }
        }
        // Keep the emptied bucket's room (it fills again), unless a burst grew it: thousands
        // of routers forming a network queue far more than they do once it has formed.
        if moving.capacity() <= KEEP {
            self.buckets[b] = moving;
        }
        self.now.make_contiguous().sort_unstable_by_key(|e| e.seq);
    }
}

/// Width of a [`WheelQueue`] slot in microseconds, as a power of two (1,024 µs).
const SLOT_SHIFT: u32 = 10;
/// Number of slots: the wheel reaches `SLOTS << SLOT_SHIFT` µs (4.2 s) ahead.
const SLOTS: usize = 4096;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Entries' room a spare list keeps (larger ones, grown by a burst, are freed).
const SLOT_KEEP: usize = 64;
/// Spare lists kept for slots that fill.
const SPARES: usize = 64;

/// A monotone priority queue over ([`Instant`], push order) for events that are mostly
/// due soon: a timing wheel of 1 ms slots over the next 4.2 s, and a [`RadixQueue`] for
/// what lies beyond.
///
/// A push onto the wheel is one append to its slot's list. When the wheel reaches a slot,
/// its entries are sorted once and become the ready run; a pop takes the run's first, and a
/// push due within the current slot goes into its place in the run (usually near its end:
/// most events are scheduled a link's latency ahead). A bitmap of occupied slots finds the
/// next one. Entries beyond the wheel's reach wait in the radix queue and move onto the
/// wheel once, as it turns.
///
/// Order is exactly (time, sequence number), as a binary heap of the same entries would pop
/// them.
#[derive(Debug)]
pub struct WheelQueue<T> {
    /// The earliest entries in order: the current slot's, and any pushed for it or before
    /// it since it became current.
    ready: VecDeque<Entry<T>>,
    /// The entries of slot `s` (time >> `SLOT_SHIFT`), for `cur < s < cur + SLOTS`, at
    /// `s % SLOTS`, in no order.
    slots: Vec<Vec<Entry<T>>>,
    /// Bit `i` of word `w`: slot `64 * w + i` (modulo `SLOTS`) has entries.
    occupied: [u64; SLOTS / 64],
    /// The current slot: the one `ready` was filled from.
    cur: u64,
    /// Entries of slots `cur + SLOTS` and later, by (time, push order).
    far: RadixQueue<Entry<T>>,
    /// Emptied lists with room, most recently used last.
    spares: Vec<Vec<Entry<T>>>,
    /// The time of the last pop: nothing may be pushed before it.
    popped: u64,
    seq: u64,
    len: usize,
}

/// Sorts a slot's entries by (time, push order). They come onto a slot mostly in time order
/// (each a link's latency after the event that queued it, with a few timers queued long
/// before in between): an insertion sort moves only the few out of place. Bursts of many
/// entries (a flood's wave) are a few ascending runs, which a merging sort takes as such.
fn sort_run<T>(run: &mut [Entry<T>]) {
    if run.len() > 32 {
        return run.sort_by_key(|e| (e.at, e.seq));
    }
    for i in 1..run.len() {
        let mut j = i;
        while j > 0 && (run[j - 1].at, run[j - 1].seq) > (run[j].at, run[j].seq) {
            run.swap(j - 1, j);
            j -= 1;
        }
    }
}

impl<T> Default for WheelQueue<T> {
    fn default() -> Self {
        WheelQueue {
            ready: VecDeque::new(),
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; SLOTS / 64],
            cur: 0,
            far: RadixQueue::default(),
            spares: Vec::new(),
            popped: 0,
            seq: 0,
            len: 0,
        }
    }
}

impl<T> WheelQueue<T> {
    /// Queues `item` at `at`, which must not be before the last popped time; returns its
    /// sequence number.
    ///
    /// # Panics
    /// If `at` is earlier than an entry already popped: the simulator clamps times to now.
    pub fn push(&mut self, at: Instant, item: T) -> u64 {
        let t = at.as_micros();
        assert!(t >= self.popped, "an event scheduled before the last one popped");
        self.seq += 1;
        let seq = self.seq;
        self.len += 1;
        let e = Entry { at, seq, item };
        let s = t >> SLOT_SHIFT;
        if s <= self.cur {
            // Later than the last pop and not after the current slot: among the ready
            // entries, after those at or before its time (it is the latest pushed).
            if self.ready.back().is_none_or(|r| r.at <= at) {
                self.ready.push_back(e);
            } else {
                let i = self.ready.partition_point(|r| r.at <= at);
                self.ready.insert(i, e);
            }
        } else if s - self.cur < SLOTS as u64 {
            self.put(s, e);
        } else {
            self.far.push(at, e);
        }
        seq
    }

    /// The time of the earliest entry.
    pub fn peek_time(&mut self) -> Option<Instant> {
        if self.ready.is_empty() {
            self.advance();
        }
        self.ready.front().map(|e| e.at)
    }

    /// Removes the earliest entry (the first pushed among the earliest).
    pub fn pop(&mut self) -> Option<Entry<T>> {
        if self.ready.is_empty() {
            self.advance();
        }
        let e = self.ready.pop_front()?;
        self.popped = e.at.as_micros();
        self.len -= 1;
        Some(e)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first occupied slot after the current one on the wheel.
    fn next_occupied(&self) -> Option<u64> {
        let start = ((self.cur + 1) & SLOT_MASK) as usize;
        let words = SLOTS / 64;
        // The start word from the start bit, the other words, then the start word's low bits.
        for k in 0..=words {
            let w = (start / 64 + k) % words;
            let mut bits = self.occupied[w];
            if k == 0 {
                bits &= !0u64 << (start % 64);
            } else if k == words {
                bits &= !(!0u64 << (start % 64));
            }
            if bits != 0 {
                let i = (w * 64 + bits.trailing_zeros() as usize) as u64;
                // Slot numbers ahead of `cur`, modulo the wheel.
                let ahead = i.wrapping_sub(self.cur) & SLOT_MASK;
                debug_assert_ne!(ahead, 0, "the current slot's entries are in `ready`");
                return Some(self.cur + ahead);
            }
        }
        None
    }

    /// With `ready` empty: turns the wheel to the next slot with entries (on the wheel or
    /// coming from `far`) and makes its entries ready, in order.
    fn advance(&mut self) {
        let near = self.next_occupied();
        let far = self.far.peek_time().map(|t| t.as_micros() >> SLOT_SHIFT);
        let s = match (near, far) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return,
        };
        self.cur = s;
        // Whatever came within reach moves onto the wheel.
        while self.far.peek_time().is_some_and(|t| (t.as_micros() >> SLOT_SHIFT) - s < SLOTS as u64) {
            let e = self.far.pop().expect("peeked").item;
            self.put(e.at.as_micros() >> SLOT_SHIFT, e);
        }
        let i = (s & SLOT_MASK) as usize;
        let mut run = std::mem::take(&mut self.slots[i]);
        self.occupied[i / 64] &= !(1 << (i % 64));
        sort_run(&mut run);
        // The ready run takes the slot's entries and room; the run's room is kept for the
        // next slot to fill, unless a burst grew it (thousands of routers forming a network).
        let mut spare = std::mem::replace(&mut self.ready, VecDeque::from(run));
        if (1..=SLOT_KEEP).contains(&spare.capacity()) && self.spares.len() < SPARES {
            spare.clear();
            self.spares.push(Vec::from(spare));
        }
    }

    /// Appends an entry to slot `s`. A slot that was empty takes the spare list freed last:
    /// its lines are likely still in cache, where the slot's own list, last used a turn of
    /// the wheel ago, would not be.
    fn put(&mut self, s: u64, e: Entry<T>) {
        let i = (s & SLOT_MASK) as usize;
        let slot = &mut self.slots[i];
        if slot.capacity() == 0 {
            *slot = self.spares.pop().unwrap_or_default();
        }
        slot.push(e);
        self.occupied[i / 64] |= 1 << (i % 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    proptest! {
        /// Pops in exactly the order of a binary heap over (time, push order), whatever the
        /// interleaving of pushes (never before the last pop) and pops.
        #[test]
        fn pops_in_time_then_push_order(ops in proptest::collection::vec((any::<bool>(), 0u64..5, 0u32..64), 1..2000)) {
            let mut q = RadixQueue::default();
            let mut model = BinaryHeap::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            for (pop, scale, off) in ops {
                if pop {
                    let got = q.pop().map(|e| (e.at.as_micros(), e.seq));
                    let want = model.pop().map(|Reverse(k)| k);
                    prop_assert_eq!(got, want);
                    if let Some((t, _)) = got {
                        now = t;
                    }
                } else {
                    // Delays of every magnitude, and many ties.
                    let at = now + u64::from(off) * 10u64.pow(scale as u32);
                    seq += 1;
                    prop_assert_eq!(q.push(Instant::from_micros(at), ()), seq);
                    model.push(Reverse((at, seq)));
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.peek_time().map(Instant::as_micros), model.peek().map(|Reverse(k)| k.0));
            }
            while let Some(Reverse(k)) = model.pop() {
                prop_assert_eq!(q.pop().map(|e| (e.at.as_micros(), e.seq)), Some(k));
            }
            prop_assert!(q.is_empty());
        }
    }

    proptest! {
        /// The wheel pops in exactly the same order, for delays within a slot, across the
        /// wheel and beyond its reach (the far queue), with peeks in between.
        #[test]
        fn wheel_pops_in_time_then_push_order(ops in proptest::collection::vec((0u8..3, 0u64..8, 0u32..64), 1..2000)) {
            let mut q = WheelQueue::default();
            let mut model = BinaryHeap::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            for (op, scale, off) in ops {
                match op {
                    0 => {
                        let got = q.pop().map(|e| (e.at.as_micros(), e.seq));
                        let want = model.pop().map(|Reverse(k)| k);
                        prop_assert_eq!(got, want);
                        if let Some((t, _)) = got {
                            now = t;
                        }
                    }
                    1 => {
                        prop_assert_eq!(q.peek_time().map(Instant::as_micros), model.peek().map(|Reverse(k)| k.0));
                    }
                    _ => {
                        let at = now + u64::from(off) * 10u64.pow(scale as u32);
                        seq += 1;
                        prop_assert_eq!(q.push(Instant::from_micros(at), ()), seq);
                        model.push(Reverse((at, seq)));
                    }
                }
                prop_assert_eq!(q.len(), model.len());
            }
            while let Some(Reverse(k)) = model.pop() {
                prop_assert_eq!(q.pop().map(|e| (e.at.as_micros(), e.seq)), Some(k));
            }
            prop_assert!(q.is_empty() && q.pop().is_none());
        }
    }

    #[test]
    fn far_future_and_time_zero_entries_keep_their_order() {
        let mut q = RadixQueue::default();
        q.push(Instant::MAX, 'z');
        q.push(Instant::ZERO, 'a');
        q.push(Instant::from_micros(1 << 40), 'm');
        q.push(Instant::ZERO, 'b');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|e| e.item)).collect();
        assert_eq!(order, ['a', 'b', 'm', 'z']);
    }
}
