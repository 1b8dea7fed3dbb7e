//! The topology: every known peer's entry, merged from gossip.
//!
//! Merging keeps, per name, the greater entry under [`entry_order`]: version first, then UID,
//! then content (only a misbehaving peer makes two entries with equal version and UID, and
//! ordering those by content keeps merge a true join). Merge is therefore commutative,
//! associative and idempotent, which the property tests check.

use core::cmp::Ordering;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::peer::PeerName;
use crate::share::Pool;
use crate::wire::gossip::{Digest, DigestEntry, DigestHasher, PeerEntry, Summary, DIGEST_ENTRIES_MAX};

pub use crate::view::View;

/// Total order on two entries for the same peer: the greater one wins a merge.
pub fn entry_order(a: &PeerEntry, b: &PeerEntry) -> Ordering {
    (a.version, a.uid).cmp(&(b.version, b.uid)).then_with(|| a.nickname.cmp(&b.nickname)).then_with(|| {
        let ka = a.conns.iter().map(|c| (c.peer, c.established, c.outbound, c.addr, c.mtu));
        let kb = b.conns.iter().map(|c| (c.peer, c.established, c.outbound, c.addr, c.mtu));
        ka.cmp(kb)
    })
}

/// Order on digest entries, consistent with [`entry_order`] up to content.
fn digest_order(a: &DigestEntry, b: &DigestEntry) -> Ordering {
    (a.version, a.uid).cmp(&(b.version, b.uid))
}

/// Merges one entry into a view. Returns whether the view changed.
pub fn merge_entry(view: &mut View, e: Arc<PeerEntry>) -> bool {
    merge_pooled(view, e, &Pool::default())
}

/// [`merge_entry`], keeping the stored copy of an entry that wins.
pub(crate) fn merge_pooled(view: &mut View, e: Arc<PeerEntry>, pool: &Pool) -> bool {
    view.merge(e, entry_order, pool)
}

/// Every peer's entry as this router knows it, ours included.
#[derive(Debug, Clone, Default)]
pub(crate) struct Topology {
    pub(crate) peers: View,
    summary: Option<Summary>,
}

impl Topology {
    /// Must be called after every change to `peers`.
    pub(crate) fn changed(&mut self) {
        self.summary = None;
    }

    /// The summary of the whole view (cached until the next change).
    pub(crate) fn summary(&mut self) -> Summary {
        if let Some(s) = self.summary {
            return s;
        }
        let mut h = DigestHasher::default();
        for e in self.peers.values() {
            h.add(&e.digest());
        }
        let s = Summary { count: u32::try_from(self.peers.len()).unwrap_or(u32::MAX), hash: h.finish() };
        self.summary = Some(s);
        s
    }

    /// The whole digest, in chunks that each fit one message and together cover every name.
    pub(crate) fn digests(&self) -> Vec<Digest> {
        let entries: Vec<DigestEntry> = self.peers.values().map(|e| e.digest()).collect();
        let chunks: Vec<&[DigestEntry]> =
            if entries.is_empty() { vec![&[][..]] } else { entries.chunks(DIGEST_ENTRIES_MAX).collect() };
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| Digest {
                lo: if i == 0 { PeerName([0; 6]) } else { c[0].name },
                hi: if i == last {
                    PeerName::BROADCAST
                } else {
                    let next = chunks[i + 1][0].name.to_u64();
                    PeerName::from_u64(next - 1)
                },
                entries: c.to_vec(),
            })
            .collect()
    }

    /// The entries the digest's sender lacks or holds older, within the digest's range.
    pub(crate) fn newer_than(&self, d: &Digest) -> Vec<&Arc<PeerEntry>> {
        let mut theirs = d.entries.iter().peekable();
        let mut out = Vec::new();
        for e in self.peers.range(d.lo, d.hi) {
            while theirs.next_if(|t| t.name < e.name).is_some() {}
            match theirs.peek() {
                Some(t) if t.name == e.name => {
                    if digest_order(&e.digest(), t) == Ordering::Greater {
                        out.push(e);
                    }
                }
                _ => out.push(e),
            }
        }
        out
    }

    /// Peers reachable from `me` by following advertised connections (established or not).
    pub(crate) fn reachable_by_conns(&self, me: PeerName) -> BTreeSet<PeerName> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([me]);
        seen.insert(me);
        while let Some(p) = queue.pop_front() {
            let Some(e) = self.peers.get(&p) else { continue };
            for c in &e.conns {
                if seen.insert(c.peer) {
                    queue.push_back(c.peer);
                }
            }
        }
        seen
    }

    /// Peers not reachable from `me` by advertised connections.
    pub(crate) fn unreachable(&self, me: PeerName) -> BTreeSet<PeerName> {
        let keep = self.reachable_by_conns(me);
        self.peers.keys().filter(|n| !keep.contains(n)).copied().collect()
    }

    /// Removes peers not reachable from `me`; returns their names.
    #[cfg(test)]
    pub(crate) fn collect_garbage(&mut self, me: PeerName) -> Vec<PeerName> {
        let gone: Vec<PeerName> = self.unreachable(me).into_iter().collect();
        self.remove(&gone);
        gone
    }

    /// Removes these peers.
    pub(crate) fn remove(&mut self, gone: &[PeerName]) {
        for n in gone {
            self.peers.remove(n);
        }
        if !gone.is_empty() {
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerUid;
    use crate::wire::gossip::tests::arb_entry;
    use crate::wire::gossip::ConnInfo;
    use proptest::prelude::*;

    fn view(entries: &[PeerEntry]) -> View {
        let mut v = View::new();
        for e in entries {
            merge_entry(&mut v, Arc::new(e.clone()));
        }
        v
    }

    fn join(a: &View, b: &View) -> View {
        let mut out = a.clone();
        for e in b.values() {
            merge_entry(&mut out, e.clone());
        }
        out
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_and_idempotent(
            a in proptest::collection::vec(arb_entry(), 0..12),
            b in proptest::collection::vec(arb_entry(), 0..12),
            c in proptest::collection::vec(arb_entry(), 0..12),
        ) {
            let (a, b, c) = (view(&a), view(&b), view(&c));
            prop_assert_eq!(join(&a, &b), join(&b, &a));
            prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
            prop_assert_eq!(join(&a, &a), a.clone());
            let ab = join(&a, &b);
            prop_assert_eq!(join(&ab, &b), ab);
        }

        #[test]
        fn digest_exchange_sends_exactly_what_differs(
            a in proptest::collection::vec(arb_entry(), 0..30),
            b in proptest::collection::vec(arb_entry(), 0..30),
        ) {
            // Honest peers: one content per (name, uid, version).
            let honest = |v: Vec<PeerEntry>| -> Vec<PeerEntry> { v.into_iter().map(|mut e| {
                e.nickname = format!("{}-{}", e.uid.0, e.version);
                e.conns.clear();
                e
            }).collect() };
            let (a, b) = (honest(a), honest(b));
            let ta = Topology { peers: view(&a), ..Topology::default() };
            let mut tb = Topology { peers: view(&b), ..Topology::default() };
            // b sends its digest; a answers with what b lacks; after merging, b holds a ⊔ b.
            for d in tb.digests() {
                for e in ta.newer_than(&d) {
                    merge_entry(&mut tb.peers, e.clone());
                }
            }
            prop_assert_eq!(&tb.peers, &join(&view(&b), &ta.peers));
            // Once b knows everything a knows, nothing more is sent.
            for d in tb.digests() {
                prop_assert!(ta.newer_than(&d).is_empty());
            }
        }
    }

    fn entry(n: u64, version: u64, conns: &[u64]) -> PeerEntry {
        PeerEntry {
            name: PeerName::from_u64(n),
            uid: PeerUid(n),
            version,
            nickname: String::new(),
            conns: conns
                .iter()
                .map(|&p| ConnInfo {
                    peer: PeerName::from_u64(p),
                    established: true,
                    outbound: true,
                    addr: None,
                    mtu: None,
                })
                .collect(),
        }
    }

    #[test]
    fn newer_version_wins_and_older_is_ignored() {
        let mut v = View::new();
        assert!(merge_entry(&mut v, Arc::new(entry(1, 2, &[]))));
        assert!(!merge_entry(&mut v, Arc::new(entry(1, 1, &[2]))));
        assert!(merge_entry(&mut v, Arc::new(entry(1, 3, &[2]))));
        assert_eq!(v[&PeerName::from_u64(1)].version, 3);
    }

    #[test]
    fn digests_cover_every_name_when_chunked() {
        let mut t = Topology::default();
        for n in 0..(DIGEST_ENTRIES_MAX as u64 * 2 + 5) {
            t.peers.insert(Arc::new(entry(n * 3 + 1, 1, &[])));
        }
        let ds = t.digests();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds[0].lo, PeerName([0; 6]));
        assert_eq!(ds[2].hi, PeerName::BROADCAST);
        for w in ds.windows(2) {
            assert_eq!(w[0].hi.to_u64() + 1, w[1].lo.to_u64());
        }
        assert_eq!(ds.iter().map(|d| d.entries.len()).sum::<usize>(), t.peers.len());
    }

    #[test]
    fn unreachable_peers_are_collected() {
        let mut t = Topology::default();
        for e in [entry(1, 1, &[2]), entry(2, 1, &[1, 3]), entry(3, 1, &[2]), entry(4, 1, &[5]), entry(5, 1, &[4])] {
            t.peers.insert(Arc::new(e));
        }
        let gone = t.collect_garbage(PeerName::from_u64(1));
        assert_eq!(gone, vec![PeerName::from_u64(4), PeerName::from_u64(5)]);
        assert_eq!(t.peers.len(), 3);
    }
}
