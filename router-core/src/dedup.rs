//! Duplicate suppression: every router drops a frames datagram whose (source, sequence
//! number) it has already seen, so a frame passes each peer at most once, even when routes
//! change while it is in flight or the underlay duplicates it.
//!
//! Each incarnation of a router starts its numbers at random, so a jump of [`RESTART_GAP`] or
//! more (either way) is a new incarnation of the source: the window starts afresh, and the
//! top of the old one is kept, so that late datagrams of the old incarnation (held by a
//! paused host, or on a long path) are dropped rather than taken for yet another incarnation
//! and passed a second time.

use core::num::NonZeroU64;

use crate::peer::PeerName;
use crate::table::Table;

const WINDOW: u64 = 128;
/// A jump this large (either way) is a new incarnation of the source, not an old datagram.
const RESTART_GAP: u64 = 1 << 32;

/// Whether `a` and `b` are numbers of one incarnation.
fn near(a: u64, b: u64) -> bool {
    a.abs_diff(b) < RESTART_GAP
}

#[derive(Debug, Clone, Copy)]
struct Window {
    top: u64,
    /// Bit `i` set: `top - i` was seen; bit 0 (`top` itself) always is. Two words rather
    /// than a `u128`, whose 16-byte alignment would make each table slot half as large
    /// again (every router holds one per flooding source), and the low one non-zero so
    /// that an empty slot costs no tag: 40 bytes with the source's name and `prev`.
    seen: (NonZeroU64, u64),
    /// The top of the source's previous incarnation's window (0: none seen).
    prev: u64,
}

impl Window {
    fn new(top: u64, seen: u128) -> Self {
        Window { top, seen: (NonZeroU64::MIN | seen as u64, (seen >> 64) as u64), prev: 0 }
    }

    /// The window of a new incarnation of the source, starting at `top`.
    fn restarted(&self, top: u64) -> Self {
        Window { prev: self.top, ..Window::new(top, 1) }
    }

    fn seen(&self) -> u128 {
        u128::from(self.seen.0.get()) | (u128::from(self.seen.1) << 64)
    }
}

/// Per-source sliding windows of recently seen sequence numbers.
#[derive(Debug, Clone)]
pub(crate) struct Dedup {
    windows: Table<PeerName, Window>,
    max: usize,
}

impl Dedup {
    pub(crate) fn new(max: usize, key: [u64; 4]) -> Self {
        Dedup { windows: Table::with_key(key), max }
    }

    /// Records `(src, seq)`; returns false if it was seen before or is too old to tell.
    #[inline]
    pub(crate) fn fresh(&mut self, src: PeerName, seq: u64) -> bool {
        // One lookup for a known source (the common case).
        let Some(w) = self.windows.get_mut(&src) else {
            if self.windows.len() >= self.max {
                // Forgetting every window lets at most one copy of each in-flight datagram through.
                self.windows.clear();
            }
            self.windows.insert(src, Window::new(seq, 1));
            return true;
        };
        if !near(seq, w.top) {
            // Late from the incarnation before: it is gone, and what it sent may have
            // passed already.
            if w.prev != 0 && near(seq, w.prev) {
                return false;
            }
            *w = w.restarted(seq);
            return true;
        }
        if seq > w.top {
            let shift = seq - w.top;
            let seen = if shift >= WINDOW { 0 } else { w.seen() << shift };
            *w = Window { prev: w.prev, ..Window::new(seq, seen | 1) };
            return true;
        }
        let back = w.top - seq;
        if back >= WINDOW {
            return false;
        }
        let bit = 1u128 << back;
        let seen = w.seen();
        *w = Window { prev: w.prev, ..Window::new(w.top, seen | bit) };
        seen & bit == 0
    }

    /// Forgets a source (it left the topology).
    pub(crate) fn forget(&mut self, src: PeerName) {
        self.windows.remove(&src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: PeerName = PeerName([2, 0, 0, 0, 0, 1]);

    #[test]
    fn repeats_are_dropped_and_reordering_within_the_window_is_not() {
        let mut d = Dedup::new(8, [3; 4]);
        let base = 1u64 << 40;
        assert!(d.fresh(P, base));
        assert!(!d.fresh(P, base));
        assert!(d.fresh(P, base + 2));
        assert!(d.fresh(P, base + 1), "late but inside the window");
        assert!(!d.fresh(P, base + 1));
        assert!(d.fresh(P, base + 500));
        assert!(!d.fresh(P, base + 2), "too old to tell: dropped");
        assert!(d.fresh(P, 5), "a new incarnation far below starts a new window");
        assert!(d.fresh(P, 6));
        assert!(!d.fresh(P, 5));
    }

    #[test]
    fn late_datagrams_of_a_restarted_source_do_not_pass_again() {
        let mut d = Dedup::new(8, [3; 4]);
        let (old, new) = (1u64 << 40, 1u64 << 50);
        for s in old..old + 10 {
            assert!(d.fresh(P, s));
        }
        // The source restarts and numbers from a new random start, above or below.
        assert!(d.fresh(P, new));
        assert!(d.fresh(P, new + 1));
        // A datagram of the old incarnation, held by a paused host, arrives now: it passed
        // before (or may have), and its sender is gone.
        assert!(!d.fresh(P, old + 3), "seen before the restart: not again");
        assert!(!d.fresh(P, old + 10), "the old incarnation's last, never seen: dropped too");
        assert!(d.fresh(P, new + 2), "the new incarnation goes on");
        // A restart to below works the same way.
        let mut d = Dedup::new(8, [3; 4]);
        assert!(d.fresh(P, new));
        assert!(d.fresh(P, old));
        assert!(!d.fresh(P, new), "the old incarnation, higher up, is not a new one");
        assert!(d.fresh(P, old + 1));
    }

    #[test]
    fn a_window_with_its_source_fills_40_bytes_of_a_table_slot() {
        assert_eq!(size_of::<Option<(PeerName, Window)>>(), 40);
    }

    proptest! {
        #[test]
        fn each_number_passes_at_most_once(seqs in proptest::collection::vec(0u64..300, 1..400)) {
            let mut d = Dedup::new(8, [3; 4]);
            let mut passed = std::collections::BTreeSet::new();
            for s in seqs {
                if d.fresh(P, 1_000_000 + s) {
                    prop_assert!(passed.insert(s), "{} passed twice", s);
                }
            }
        }
    }
}
