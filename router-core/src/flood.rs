//! Budgets for the frames a router floods on behalf of its own bridge (broadcast, multicast
//! and unknown unicast), so that one container cannot take the router or the network.
//!
//! Flooding is the expensive path: every captured frame with a group or unknown destination
//! goes to every neighbour on the broadcast tree and into every remote bridge. The budgets:
//! - each learned local source MAC: `flood_rate` frames per second, in bursts of a tenth of
//!   that (at least one);
//! - every source not yet learned as local (a new MAC, a MAC refused by the full table, a MAC
//!   learned behind a peer), together: the same budget as one source, so a container that
//!   sends from random source MACs competes with itself, not with the others;
//! - all local sources together: `flood_rate_total` frames per second.
//!
//! A learned source that has flooded nothing for a second (a container sending an ARP request
//! now and then) is *quiet*: its frame passes whatever the total says, so a heavy flooder
//! using up the total cannot stop its neighbours from resolving addresses. It still counts
//! towards the total. Quiet frames are bounded by the learned local MACs (the table's local
//! share) per second.
//!
//! Each budget is one theoretical arrival time (the generic cell rate algorithm): a frame
//! conforms when that time is at most a burst ahead of now, and moves it one interval on.

use core::time::Duration;

use crate::peer::Mac;
use crate::table::Table;
use crate::time::Instant;

/// A learned source that flooded nothing for this long is quiet.
const QUIET: Duration = Duration::from_secs(1);

/// One rate: the interval between frames and how far ahead of now the arrival time may run.
#[derive(Debug, Clone, Copy)]
struct Rate {
    interval: Duration,
    tolerance: Duration,
}

impl Rate {
    /// `per_second` frames a second (at least one), in bursts of a tenth of a second's worth.
    fn new(per_second: u32) -> Self {
        let per_second = per_second.max(1);
        let interval = Duration::from_secs(1) / per_second;
        let burst = (per_second / 10).max(1);
        Rate { interval, tolerance: interval * (burst - 1) }
    }

    fn conforms(self, tat: Instant, now: Instant) -> bool {
        tat <= now + self.tolerance
    }

    fn charged(self, tat: Instant, now: Instant) -> Instant {
        tat.max(now) + self.interval
    }
}

/// The flood budgets of one router (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct FloodBudget {
    per_source: Rate,
    total: Rate,
    /// Arrival times of the learned local sources that flooded lately; a source missing here
    /// is quiet.
    sources: Table<Mac, Instant>,
    /// Most entries in `sources`: the table's local share.
    sources_max: usize,
    newcomers: Instant,
    all: Instant,
}

impl FloodBudget {
    pub(crate) fn new(per_source: u32, total: u32, sources_max: usize, key: [u64; 4]) -> Self {
        FloodBudget {
            per_source: Rate::new(per_source),
            total: Rate::new(total),
            sources: Table::with_key(key),
            sources_max,
            newcomers: Instant::ZERO,
            all: Instant::ZERO,
        }
    }

    /// Whether a frame from `src` may be flooded now; `learned` says whether `src` was a
    /// learned local MAC before this frame. Charges the budgets it passes.
    pub(crate) fn admit(&mut self, now: Instant, src: Mac, learned: bool) -> bool {
        let (per, total) = (self.per_source, self.total);
        if learned {
            let known = self.sources.get(&src).copied();
            if known.is_none() && self.sources.len() >= self.sources_max {
                self.sources.retain(|_, t| now < *t + QUIET);
            }
            if known.is_some() || self.sources.len() < self.sources_max {
                let tat = match known {
                    Some(tat) if now < tat + QUIET => {
                        if !(per.conforms(tat, now) && total.conforms(self.all, now)) {
                            return false;
                        }
                        per.charged(tat, now)
                    }
                    _ => per.charged(now, now),
                };
                self.sources.insert(src, tat);
                self.all = total.charged(self.all, now);
                return true;
            }
        }
        // Not learned, or no room to follow it: one of the newcomers.
        if !(per.conforms(self.newcomers, now) && total.conforms(self.all, now)) {
            return false;
        }
        self.newcomers = per.charged(self.newcomers, now);
        self.all = total.charged(self.all, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u32) -> Mac {
        let b = i.to_be_bytes();
        Mac([2, 0, b[0], b[1], b[2], b[3]])
    }

    /// How many of `frames` frames, sent `gap` apart from `src`, pass.
    fn passed(b: &mut FloodBudget, start: Instant, gap: Duration, frames: u32, src: Mac, learned: bool) -> u32 {
        (0..frames).filter(|&i| b.admit(start + gap * i, src, learned)).count() as u32
    }

    #[test]
    fn one_source_gets_its_rate_after_a_burst() {
        let mut b = FloodBudget::new(1000, 10_000, 100, [1; 4]);
        // 10,000 frames in one second: a burst of 100, then one per millisecond.
        let n = passed(&mut b, Instant::ZERO, Duration::from_micros(100), 10_000, mac(1), true);
        assert!((1000..=1101).contains(&n), "{n}");
    }

    #[test]
    fn random_sources_share_one_budget_and_cannot_starve_a_learned_one() {
        let mut b = FloodBudget::new(1000, 10_000, 100, [1; 4]);
        let gap = Duration::from_micros(10);
        let (mut flood, mut mine) = (0, 0);
        for i in 0..100_000u32 {
            let now = Instant::ZERO + gap * i;
            flood += u32::from(b.admit(now, mac(1000 + i), false));
            // A learned container floods 500 frames a second (one in 200 ticks).
            if i % 200 == 0 {
                mine += u32::from(b.admit(now, mac(1), true));
            }
        }
        assert!((1000..=1101).contains(&flood), "the random sources together: {flood}");
        assert_eq!(mine, 500, "the learned source: all of its frames");
    }

    #[test]
    fn the_total_binds_many_heavy_sources_but_never_a_quiet_one() {
        let mut b = FloodBudget::new(1000, 2000, 100, [1; 4]);
        let gap = Duration::from_micros(10);
        let mut heavy = 0;
        let mut quiet = 0;
        // Two seconds.
        for i in 0..200_000u32 {
            let now = Instant::ZERO + gap * i;
            // 50 learned sources, each as fast as it may go.
            heavy += u32::from(b.admit(now, mac(i % 50), true));
            // One that floods one frame every 1.5 s.
            if i % 150_000 == 0 {
                quiet += u32::from(b.admit(now, mac(999), true));
            }
        }
        assert!(heavy <= 4000 + 200, "the total holds: {heavy}");
        assert!(heavy >= 3900, "and is used: {heavy}");
        assert_eq!(quiet, 2, "the quiet source passes whenever it speaks");
    }

    #[test]
    fn sources_are_bounded_and_room_is_made_from_the_quiet_ones() {
        let mut b = FloodBudget::new(1000, 1_000_000, 4, [1; 4]);
        for i in 0..4 {
            assert!(b.admit(Instant::ZERO, mac(i), true));
        }
        // No room: a fifth source is one of the newcomers, whose burst is 100 frames.
        assert_eq!(passed(&mut b, Instant::ZERO, Duration::ZERO, 200, mac(9), true), 100);
        assert_eq!(b.sources.len(), 4);
        let later = Instant::ZERO + QUIET * 2;
        assert_eq!(passed(&mut b, later, Duration::ZERO, 200, mac(9), true), 100, "its own burst");
        assert_eq!(b.sources.len(), 1, "the quiet ones made room");
    }
}
