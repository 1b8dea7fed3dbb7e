//! The event queue: a radix heap over virtual time.
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
