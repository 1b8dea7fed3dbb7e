//! MAC learning: which peer each MAC lives behind.
//!
//! Group addresses are never learned. A MAC seen somewhere new moves at once (a migrated
//! container works immediately), except back to where it has just left: for
//! [`MOVE_BACK_HOLD`] after a move, only an announcement (a gratuitous ARP) moves it back, so
//! a frame the container sent before it moved, arriving late by a longer path, cannot undo
//! the move. Idle entries expire. The table has a bound, and so does each
//! owner's share of it (the local bridge is one owner, each peer another): one container
//! sending from random source MACs fills its owner's share, not the table. The table is keyed
//! (see `Table`), so chosen MACs cannot be made to collide.

use core::time::Duration;

use std::collections::BTreeMap;

use crate::peer::{Mac, PeerName};
use crate::table::Table;
use crate::time::Instant;

/// How long after a MAC moves a frame from where it was may not move it back (unless it is
/// an announcement): longer than any relay path delays a frame behind the announcement that
/// overtook it.
pub(crate) const MOVE_BACK_HOLD: Duration = Duration::from_secs(2);

/// Most recent moves remembered (see [`MOVE_BACK_HOLD`]); beyond, moves are not held.
const RECENT_MOVES_MAX: usize = 4096;

/// Where a MAC lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum MacOwner {
    /// On our own bridge.
    Local,
    /// Behind this peer.
    Peer(PeerName),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    owner: MacOwner,
    last_seen: Instant,
}

/// What [`MacCache::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A new entry.
    New,
    /// Same place, fresher.
    Refreshed,
    /// The MAC moved from another owner.
    Moved,
    /// Group address; not learned.
    Group,
    /// The table, or its owner's share of it, is full; not learned (or not moved).
    Full,
    /// A frame from where the MAC has just moved away from, not an announcement: not moved
    /// back (see [`MOVE_BACK_HOLD`]).
    Stale,
}

/// The MAC table.
#[derive(Debug, Clone)]
pub(crate) struct MacCache {
    map: Table<Mac, Entry>,
    expiry: Duration,
    max: usize,
    /// Most entries one owner may have.
    per_owner_max: usize,
    /// Entries per owner (owners with none are not kept), counted only while the table holds
    /// at least `per_owner_max` entries: below that no owner can exceed its share, and a
    /// router that knows thousands of owners keeps no count for them.
    owners: Option<BTreeMap<MacOwner, u32>>,
    /// MACs that moved lately: where each was, and when it left.
    recent: Table<Mac, (MacOwner, Instant)>,
}

impl MacCache {
    pub(crate) fn new(expiry: Duration, max: usize, per_owner_max: usize, key: [u64; 4]) -> Self {
        let recent_key = key.map(|k| k.rotate_left(7) ^ 0x9e37_79b9);
        MacCache {
            map: Table::with_key(key),
            expiry,
            max,
            per_owner_max,
            owners: None,
            recent: Table::with_key(recent_key),
        }
    }

    #[cfg(test)]
    fn count(&self, owner: MacOwner) -> usize {
        self.owners.as_ref().and_then(|o| o.get(&owner)).map_or(0, |&n| n as usize)
    }

    /// Whether `owner` has its whole share.
    fn full(&self, owner: MacOwner) -> bool {
        self.owners.as_ref().is_some_and(|o| o.get(&owner).is_some_and(|&n| n as usize >= self.per_owner_max))
    }

    fn add(&mut self, owner: MacOwner) {
        if let Some(o) = &mut self.owners {
            *o.entry(owner).or_insert(0) += 1;
        } else if self.map.len() >= self.per_owner_max {
            // Counting starts: every entry so far, this one included.
            let mut o = BTreeMap::new();
            for (_, e) in self.map.iter() {
                *o.entry(e.owner).or_insert(0u32) += 1;
            }
            self.owners = Some(o);
        }
    }

    fn sub(owners: &mut Option<BTreeMap<MacOwner, u32>>, owner: MacOwner) {
        if let Some(n) = owners.as_mut().and_then(|o| o.get_mut(&owner)) {
            *n -= 1;
            if *n == 0 {
                owners.as_mut().expect("counting").remove(&owner);
            }
        }
    }

    /// Stops counting once the table holds well under a share again.
    fn maybe_stop_counting(&mut self) {
        if self.map.len() < self.per_owner_max / 2 {
            self.owners = None;
        }
    }

    /// Records that `mac` was seen at `owner`, in a frame that is an announcement of where it
    /// is (a gratuitous ARP) or not.
    #[inline]
    pub(crate) fn learn(&mut self, now: Instant, mac: Mac, owner: MacOwner, announce: bool) -> Learned {
        if mac.is_group() {
            return Learned::Group;
        }
        let full = self.full(owner);
        if let Some(e) = self.map.get_mut(&mac) {
            if e.owner == owner {
                e.last_seen = now;
                return Learned::Refreshed;
            }
            if full {
                return Learned::Full;
            }
            let left = self.recent.get(&mac).is_some_and(|&(o, at)| o == owner && now < at + MOVE_BACK_HOLD);
            if left && !announce {
                return Learned::Stale;
            }
            let was = core::mem::replace(&mut e.owner, owner);
            e.last_seen = now;
            Self::sub(&mut self.owners, was);
            self.add(owner);
            self.remember_move(now, mac, was);
            return Learned::Moved;
        }
        if full || self.map.len() >= self.max {
            return Learned::Full;
        }
        self.map.insert(mac, Entry { owner, last_seen: now });
        self.add(owner);
        Learned::New
    }

    /// Remembers that `mac` left `was` at `now`.
    fn remember_move(&mut self, now: Instant, mac: Mac, was: MacOwner) {
        if self.recent.len() >= RECENT_MOVES_MAX && self.recent.get(&mac).is_none() {
            self.recent.retain(|_, &mut (_, at)| now < at + MOVE_BACK_HOLD);
            if self.recent.len() >= RECENT_MOVES_MAX {
                return;
            }
        }
        self.recent.insert(mac, (was, now));
    }

    /// Where `mac` lives, if known.
    #[inline]
    pub(crate) fn lookup(&self, mac: Mac) -> Option<MacOwner> {
        self.map.get(&mac).map(|e| e.owner)
    }

    /// Forgets `mac`.
    pub(crate) fn remove(&mut self, mac: Mac) {
        if let Some(e) = self.map.remove(&mac) {
            Self::sub(&mut self.owners, e.owner);
            self.maybe_stop_counting();
        }
    }

    /// Forgets every MAC behind `peer` (it became unreachable or restarted).
    pub(crate) fn forget_peer(&mut self, peer: PeerName) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| e.owner != MacOwner::Peer(peer));
        if let Some(o) = &mut self.owners {
            o.remove(&MacOwner::Peer(peer));
        }
        self.maybe_stop_counting();
        before - self.map.len()
    }

    /// Drops entries idle for the expiry time; returns how many, and when to sweep next: when
    /// the next entry expires, but no sooner than a tenth of the expiry time from now. Each
    /// sweep reads the whole table, and entries refreshed at scattered moments fall due one
    /// after another, so without that floor a large table would be read every few
    /// milliseconds. With it, a table is read at most about ten times per expiry time, and an
    /// entry goes after between 1 and 1.1 expiry times of idleness (as in Weave).
    pub(crate) fn sweep(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let before = self.map.len();
        let expiry = self.expiry;
        let mut next: Option<Instant> = None;
        let owners = &mut self.owners;
        self.map.retain(|_, e| {
            let due = e.last_seen + expiry;
            if due <= now {
                Self::sub(owners, e.owner);
                return false;
            }
            next = Some(next.map_or(due, |n| n.min(due)));
            true
        });
        self.maybe_stop_counting();
        (before - self.map.len(), next.map(|due| due.max(now + expiry / 10)))
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// All entries sorted by MAC: (mac, owner, last seen).
    pub(crate) fn entries(&self) -> Vec<(Mac, MacOwner, Instant)> {
        let mut v: Vec<_> = self.map.iter().map(|(m, e)| (*m, e.owner, e.last_seen)).collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// The idle time after which entries expire.
    pub(crate) fn expiry(&self) -> Duration {
        self.expiry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([2, 0, 0, 0, 0, 1]);

    #[test]
    fn an_entry_fills_24_bytes_of_a_table_slot() {
        assert_eq!(size_of::<Option<(Mac, Entry)>>(), 24);
    }

    #[test]
    fn learns_moves_and_expires() {
        let mut c = MacCache::new(Duration::from_secs(10), 4, 4, [1; 4]);
        let t0 = Instant::ZERO;
        assert_eq!(c.learn(t0, M, MacOwner::Local, false), Learned::New);
        assert_eq!(c.learn(t0, M, MacOwner::Local, false), Learned::Refreshed);
        let p = MacOwner::Peer(PeerName::from_u64(7));
        assert_eq!(c.learn(Instant::from_millis(5000), M, p, false), Learned::Moved);
        assert_eq!(c.lookup(M), Some(p));
        assert_eq!(c.sweep(Instant::from_millis(14_000)), (0, Some(Instant::from_millis(15_000))));
        assert_eq!(c.sweep(Instant::from_millis(15_000)), (1, None));
        assert_eq!(c.lookup(M), None);
    }

    #[test]
    fn a_late_frame_does_not_move_a_mac_back_but_an_announcement_does() {
        let mut c = MacCache::new(Duration::from_secs(600), 100, 100, [1; 4]);
        let (a, b) = (MacOwner::Peer(PeerName::from_u64(1)), MacOwner::Peer(PeerName::from_u64(2)));
        let t = |ms| Instant::from_millis(ms);
        assert_eq!(c.learn(t(0), M, a, false), Learned::New);
        assert_eq!(c.learn(t(1000), M, b, true), Learned::Moved, "the container moved to b and said so");
        assert_eq!(c.learn(t(1003), M, a, false), Learned::Stale, "a frame it sent from a before the move");
        assert_eq!(c.lookup(M), Some(b));
        assert_eq!(c.learn(t(1500), M, a, true), Learned::Moved, "it moved back, and said so");
        assert_eq!(c.learn(t(1501), M, b, false), Learned::Stale);
        let later = t(1500) + MOVE_BACK_HOLD;
        assert_eq!(c.learn(later, M, b, false), Learned::Moved, "after the hold, frames move it as ever");
    }

    #[test]
    fn group_addresses_are_never_learned_and_the_table_is_bounded() {
        let mut c = MacCache::new(Duration::from_secs(10), 2, 2, [1; 4]);
        assert_eq!(c.learn(Instant::ZERO, Mac::BROADCAST, MacOwner::Local, false), Learned::Group);
        assert_eq!(c.learn(Instant::ZERO, Mac([1, 0, 0x5e, 0, 0, 1]), MacOwner::Local, false), Learned::Group);
        for i in 0..2 {
            assert_eq!(c.learn(Instant::ZERO, Mac([2, 0, 0, 0, 0, i]), MacOwner::Local, false), Learned::New);
        }
        assert_eq!(c.learn(Instant::ZERO, Mac([2, 0, 0, 0, 0, 9]), MacOwner::Local, false), Learned::Full);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn entries_falling_due_one_after_another_are_swept_in_batches() {
        let expiry = Duration::from_secs(10);
        let mut c = MacCache::new(expiry, 1000, 1000, [1; 4]);
        // 500 MACs last seen 20 ms apart, over the first 10 s.
        let seen = |i: u64| Instant::from_millis(20 * i);
        for i in 0..500u64 {
            let b = i.to_be_bytes();
            c.learn(seen(i), Mac([2, 0, 0, 0, b[6], b[7]]), MacOwner::Local, false);
        }
        let (mut at, mut sweeps) = (seen(0) + expiry, 0);
        while c.len() > 0 {
            let (gone, next) = c.sweep(at);
            sweeps += 1;
            // Nothing goes early, nor later than 1.1 expiry times after it was last seen.
            for i in 0..500u64 {
                let b = i.to_be_bytes();
                let held = c.lookup(Mac([2, 0, 0, 0, b[6], b[7]])).is_some();
                assert_eq!(held, at < seen(i) + expiry, "entry {i} at {at:?}");
                if held {
                    assert!(next.unwrap() <= seen(i) + expiry + expiry / 10);
                }
            }
            assert!(gone > 0 || sweeps == 1);
            match next {
                Some(n) => {
                    assert!(n >= at + expiry / 10, "at most ten sweeps per expiry time");
                    at = n;
                }
                None => break,
            }
        }
        assert_eq!(c.len(), 0);
        assert!(sweeps <= 11, "{sweeps} sweeps");
    }

    #[test]
    fn one_owner_fills_its_share_not_the_table_and_counts_stay_true() {
        let mut c = MacCache::new(Duration::from_secs(10), 100, 10, [7; 4]);
        let flooder = MacOwner::Peer(PeerName::from_u64(9));
        for n in 0..1000u64 {
            let mac = Mac((0x0200_0000_0000 | n).to_be_bytes()[2..].try_into().unwrap());
            c.learn(Instant::ZERO, mac, flooder, false);
        }
        assert_eq!(c.len(), 10, "the flooding peer holds its share only");
        let mine = Mac([2, 0xaa, 0, 0, 0, 1]);
        assert_eq!(c.learn(Instant::ZERO, mine, MacOwner::Local, false), Learned::New, "others still learn");
        // A MAC may not move into a full share, and moves keep the counts right.
        assert_eq!(c.learn(Instant::ZERO, mine, flooder, false), Learned::Full);
        assert_eq!(c.learn(Instant::ZERO, mine, MacOwner::Peer(PeerName::from_u64(3)), false), Learned::Moved);
        assert_eq!(c.count(MacOwner::Local), 0);
        assert_eq!(c.forget_peer(PeerName::from_u64(9)), 10);
        assert_eq!(c.count(flooder), 0);
        let (gone, _) = c.sweep(Instant::ZERO + Duration::from_secs(11));
        assert_eq!((gone, c.len()), (1, 0));
        assert!(c.owners.is_none(), "an empty table counts nothing");
    }
}
