//! Duplicate suppression: every router drops a frames datagram whose (source, sequence
//! number) it has already seen, so a frame passes each peer at most once, even when routes
//! change while it is in flight or the underlay duplicates it.

use core::num::NonZeroU64;

use crate::peer::PeerName;
use crate::table::Table;

const WINDOW: u64 = 128;
/// A jump back this large is a new incarnation of the source, not an old datagram.
const RESTART_GAP: u64 = 1 << 32;

#[derive(Debug, Clone, Copy)]
struct Window {
    top: u64,
    /// Bit `i` set: `top - i` was seen; bit 0 (`top` itself) always is. Two words rather
    /// than a `u128`, whose 16-byte alignment would make each table slot half as large
    /// again (every router holds one per flooding source), and the low one non-zero so
    /// that an empty slot costs no tag: 32 bytes with the source's name.
    seen: (NonZeroU64, u64),
}

impl Window {
    fn new(top: u64, seen: u128) -> Self {
        Window { top, seen: (NonZeroU64::MIN | seen as u64, (seen >> 64) as u64) }
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
        if seq > w.top {
            let shift = seq - w.top;
            let seen = if shift >= WINDOW { 0 } else { w.seen() << shift };
            *w = Window::new(seq, seen | 1);
            return true;
        }
        let back = w.top - seq;
        if back >= WINDOW {
            if back >= RESTART_GAP {
                *w = Window::new(seq, 1);
                return true;
            }
            return false;
        }
        let bit = 1u128 << back;
        let seen = w.seen();
        *w = Window::new(w.top, seen | bit);
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
    fn a_window_with_its_source_fills_32_bytes_of_a_table_slot() {
        assert_eq!(size_of::<Option<(PeerName, Window)>>(), 32);
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
