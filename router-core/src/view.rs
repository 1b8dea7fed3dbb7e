//! A view of the topology: every known peer's entry, in name order.
//!
//! Entries are kept in short sorted runs ("leaves") behind shared pointers. Where a run ends
//! depends only on the names in it: a leaf ends at each name whose hash is a multiple of
//! [`LEAF_SPAN`] (content-defined chunking). So two views holding the same entries are cut
//! into the same leaves whatever order the entries arrived in, and where the driver shares
//! state between routers (see [`crate::share`]), equal leaves are one allocation: thousands
//! of routers that agree on most of the topology hold most of it once. Changing an entry copies one leaf (about
//! [`LEAF_SPAN`] pointers) unless the leaf is this view's alone.

use core::fmt;
use std::sync::Arc;

use crate::peer::PeerName;
use crate::share::Pool;
use crate::wire::gossip::PeerEntry;
use core::hash::Hasher;
use rustc_hash::FxHasher;

/// Expected entries per leaf.
pub(crate) const LEAF_SPAN: u64 = 32;

/// A sorted run of entries; see the module documentation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Leaf {
    /// The entries' names, for searching without touching the entries.
    names: Vec<PeerName>,
    entries: Vec<Arc<PeerEntry>>,
    /// [`Leaf::key`], set when the leaf is pooled (zero before).
    pub(crate) key: u64,
}

impl Leaf {
    fn new(entries: Vec<Arc<PeerEntry>>) -> Self {
        Leaf { names: entries.iter().map(|e| e.name).collect(), entries, key: 0 }
    }

    fn find(&self, name: &PeerName) -> Result<usize, usize> {
        self.names.binary_search(name)
    }

    fn last_name(&self) -> PeerName {
        *self.names.last().expect("leaves are never empty")
    }

    /// A hash of the entries' names, incarnations and versions (equal leaves hash equal).
    pub(crate) fn content_key(&self) -> u64 {
        let mut h = FxHasher::default();
        for e in &self.entries {
            h.write_u64(e.name.to_u64());
            h.write_u64(e.uid.0);
            h.write_u64(e.version);
        }
        h.finish()
    }

    /// Whether both hold the very same entries (pointer equality).
    pub(crate) fn same_as(&self, other: &Leaf) -> bool {
        self.entries.len() == other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// Whether a leaf ends at `name`.
fn ends_leaf(name: PeerName) -> bool {
    // splitmix64's finaliser: names that differ in one bit land far apart.
    let mut z = name.to_u64().wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z % LEAF_SPAN == 0
}

/// Every known peer's entry by name, ours included. Entries are immutable and shared.
#[derive(Clone, Default)]
pub struct View {
    /// Invariant: no leaf is empty; every leaf but the last ends at a name for which
    /// [`ends_leaf`] holds, and no other name in a leaf does.
    leaves: Vec<Arc<Leaf>>,
    /// The last name of each leaf.
    ends: Vec<PeerName>,
    len: usize,
    /// Leaves changed since the last [`View::share`], unless `reshaped` (leaves were added or
    /// removed: every leaf is looked at).
    touched: Vec<u32>,
    reshaped: bool,
}

impl View {
    /// An empty view.
    pub fn new() -> Self {
        View::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The leaf that holds `name` if anything does.
    fn leaf_for(&self, name: &PeerName) -> usize {
        self.ends.partition_point(|n| n < name)
    }

    /// The entry for `name`.
    pub fn get(&self, name: &PeerName) -> Option<&Arc<PeerEntry>> {
        let leaf = self.leaves.get(self.leaf_for(name))?;
        let i = leaf.find(name).ok()?;
        Some(&leaf.entries[i])
    }

    /// Whether there is an entry for `name`.
    pub fn contains_key(&self, name: &PeerName) -> bool {
        self.get(name).is_some()
    }

    /// Leaf `i`, for changing: copied first unless this view alone holds it.
    fn leaf_mut(&mut self, i: usize) -> &mut Leaf {
        if self.touched.len() >= self.leaves.len() {
            // As good as all of them (and bounded where nothing is ever shared).
            self.touched.clear();
            self.reshaped = true;
        } else {
            self.touched.push(i as u32);
        }
        let l = &mut self.leaves[i];
        // A pooled leaf has weak references and is never changed in place.
        if Arc::get_mut(l).is_none() {
            *l = Arc::new(Leaf { key: 0, ..Leaf::clone(l) });
        }
        let l = Arc::get_mut(l).expect("just made unique");
        l.key = 0;
        l
    }

    /// Puts `e` under its name; returns the entry it replaced.
    pub fn insert(&mut self, e: Arc<PeerEntry>) -> Option<Arc<PeerEntry>> {
        let name = e.name;
        let mut i = self.leaf_for(&name);
        if i == self.leaves.len() {
            // Past every name: the last leaf grows, unless it is closed.
            match self.ends.last() {
                Some(&last) if !ends_leaf(last) => i -= 1,
                _ => {
                    self.leaves.push(Arc::new(Leaf::new(vec![e])));
                    self.reshaped = true;
                    self.ends.push(name);
                    self.len += 1;
                    return None;
                }
            }
        }
        let leaf = self.leaf_mut(i);
        match leaf.find(&name) {
            Ok(at) => Some(std::mem::replace(&mut leaf.entries[at], e)),
            Err(at) => {
                leaf.entries.insert(at, e);
                leaf.names.insert(at, name);
                if ends_leaf(name) && at + 1 < leaf.entries.len() {
                    let rest =
                        Leaf { names: leaf.names.split_off(at + 1), entries: leaf.entries.split_off(at + 1), key: 0 };
                    self.leaves.insert(i + 1, Arc::new(rest));
                    self.reshaped = true;
                    self.ends.insert(i, name);
                } else {
                    self.ends[i] = leaf.last_name();
                }
                self.len += 1;
                None
            }
        }
    }

    /// Puts `e` in unless the entry under its name wins over it by `order`; returns whether
    /// it went in. One search where the name is known already (the common case).
    pub(crate) fn merge(
        &mut self,
        e: Arc<PeerEntry>,
        order: impl Fn(&PeerEntry, &PeerEntry) -> core::cmp::Ordering,
        pool: &Pool,
    ) -> bool {
        let i = self.leaf_for(&e.name);
        let Some(at) = self.leaves.get(i).and_then(|l| l.find(&e.name).ok()) else {
            self.insert(pool.entry(e));
            return true;
        };
        if order(&e, &self.leaves[i].entries[at]) != core::cmp::Ordering::Greater {
            return false;
        }
        self.leaf_mut(i).entries[at] = pool.entry(e);
        true
    }

    /// Removes the entry for `name`; returns it.
    pub fn remove(&mut self, name: &PeerName) -> Option<Arc<PeerEntry>> {
        let i = self.leaf_for(name);
        let at = self.leaves.get(i)?.find(name).ok()?;
        let leaf = self.leaf_mut(i);
        let gone = leaf.entries.remove(at);
        leaf.names.remove(at);
        if ends_leaf(*name) && i + 1 < self.leaves.len() {
            // The leaf lost its end: it runs on into the next one.
            let next = self.leaves.remove(i + 1);
            self.reshaped = true;
            self.ends.remove(i);
            let leaf = self.leaf_mut(i);
            leaf.entries.extend(next.entries.iter().cloned());
            leaf.names.extend_from_slice(&next.names);
        } else if self.leaves[i].entries.is_empty() {
            self.leaves.remove(i);
            self.ends.remove(i);
            self.reshaped = true;
        } else {
            self.ends[i] = self.leaves[i].last_name();
        }
        self.len -= 1;
        Some(gone)
    }

    /// Every entry, in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Arc<PeerEntry>> + '_ {
        self.leaves.iter().flat_map(|l| l.entries.iter())
    }

    /// Every name, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &PeerName> + '_ {
        self.values().map(|e| &e.name)
    }

    /// The entries with names in `lo..=hi`, in order.
    pub fn range(&self, lo: PeerName, hi: PeerName) -> impl Iterator<Item = &Arc<PeerEntry>> + '_ {
        let first = self.leaf_for(&lo);
        self.leaves[first..]
            .iter()
            .flat_map(|l| l.entries.iter())
            .skip_while(move |e| e.name < lo)
            .take_while(move |e| e.name <= hi)
    }

    /// Whether a leaf changed since the last [`View::share`].
    pub(crate) fn unshared(&self) -> bool {
        self.reshaped || !self.touched.is_empty()
    }

    /// Swaps every leaf this view alone holds for the stored copy of an equal one, storing it
    /// when there is none. Nothing changes for a pool that shares nothing.
    pub(crate) fn share(&mut self, pool: &Pool) {
        if !pool.is_shared() {
            return;
        }
        let mut touched = std::mem::take(&mut self.touched);
        if std::mem::take(&mut self.reshaped) {
            touched.clear();
            touched.extend(0..self.leaves.len() as u32);
        } else {
            touched.sort_unstable();
            touched.dedup();
        }
        for &i in &touched {
            let l = &mut self.leaves[i as usize];
            // Pooled leaves (weak references) and leaves held elsewhere are shared already.
            if let Some(mine) = Arc::get_mut(l) {
                mine.key = mine.content_key();
                *l = pool.leaf(Arc::clone(l));
            }
        }
        touched.clear();
        self.touched = touched;
    }

    /// A hash of the whole view's contents from its leaves' keys: cheap, but meaningful only
    /// after [`View::share`] with a shared pool (private leaves have no key yet).
    pub(crate) fn leaf_key(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for l in &self.leaves {
            h = (h ^ l.key).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        }
        h ^ self.len as u64
    }

    /// Whether both views hold the very same leaves.
    pub(crate) fn same_leaves(&self, leaves: &[Arc<Leaf>]) -> bool {
        self.leaves.len() == leaves.len() && self.leaves.iter().zip(leaves).all(|(a, b)| Arc::ptr_eq(a, b))
    }

    pub(crate) fn leaves(&self) -> &[Arc<Leaf>] {
        &self.leaves
    }

    /// Whether `self` and `other` share all their leaves (one allocation each).
    #[cfg(feature = "many-routers")]
    pub fn shares_leaves_with(&self, other: &View) -> bool {
        self.same_leaves(&other.leaves)
    }
}

impl PartialEq for View {
    fn eq(&self, other: &View) -> bool {
        self.len == other.len && self.values().zip(other.values()).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
    }
}

impl Eq for View {}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.values().map(|e| (e.name, e))).finish()
    }
}

impl core::ops::Index<&PeerName> for View {
    type Output = Arc<PeerEntry>;

    fn index(&self, name: &PeerName) -> &Arc<PeerEntry> {
        self.get(name).expect("no entry for this name in the view")
    }
}

impl FromIterator<Arc<PeerEntry>> for View {
    fn from_iter<I: IntoIterator<Item = Arc<PeerEntry>>>(iter: I) -> Self {
        let mut v = View::new();
        for e in iter {
            v.insert(e);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerUid;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entry(name: u64, version: u64) -> Arc<PeerEntry> {
        let name = PeerName::from_u64(name);
        Arc::new(PeerEntry { name, uid: PeerUid(1), version, nickname: String::new(), conns: vec![] })
    }

    fn check_invariant(v: &View) {
        let mut count = 0;
        for (i, l) in v.leaves.iter().enumerate() {
            assert!(!l.entries.is_empty());
            for (k, e) in l.entries.iter().enumerate() {
                let last_of_leaf = k + 1 == l.entries.len();
                if !last_of_leaf {
                    assert!(!ends_leaf(e.name), "a leaf boundary inside a leaf");
                } else if i + 1 < v.leaves.len() {
                    assert!(ends_leaf(e.name), "a leaf ends at no boundary");
                }
            }
            count += l.entries.len();
        }
        assert_eq!(count, v.len);
        assert!(v.leaves.iter().map(|l| l.last_name()).eq(v.ends.iter().copied()), "ends match");
        assert!(v.leaves.iter().all(|l| l.entries.iter().map(|e| e.name).eq(l.names.iter().copied())), "names match");
        let names: Vec<_> = v.keys().copied().collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "names in order");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        Remove(u64),
    }

    fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![(0u64..400, 1u64..4).prop_map(|(n, v)| Op::Insert(n, v)), (0u64..400).prop_map(Op::Remove)],
            0..600,
        )
    }

    proptest! {
        #[test]
        fn behaves_as_an_ordered_map(ops in arb_ops()) {
            let mut v = View::new();
            let mut model: BTreeMap<PeerName, Arc<PeerEntry>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(n, ver) => {
                        let e = entry(n, ver);
                        prop_assert_eq!(v.insert(e.clone()), model.insert(e.name, e));
                    }
                    Op::Remove(n) => {
                        let n = PeerName::from_u64(n);
                        prop_assert_eq!(v.remove(&n), model.remove(&n));
                    }
                }
                check_invariant(&v);
            }
            prop_assert!(v.values().eq(model.values()));
            for n in 0..400 {
                let n = PeerName::from_u64(n);
                prop_assert_eq!(v.get(&n), model.get(&n));
            }
            let (lo, hi) = (PeerName::from_u64(100), PeerName::from_u64(250));
            prop_assert!(v.range(lo, hi).eq(model.range(lo..=hi).map(|(_, e)| e)));
        }

        #[test]
        fn equal_contents_make_equal_leaves_whatever_the_order(mut names in proptest::collection::vec(0u64..5000, 0..300), seed in any::<u64>()) {
            let entries: BTreeMap<u64, Arc<PeerEntry>> = names.iter().map(|&n| (n, entry(n, 1))).collect();
            let a: View = entries.values().cloned().collect();
            // Another order, with detours: extra entries inserted, then removed.
            names.sort_by_key(|n| n.wrapping_mul(seed | 1).rotate_left(17));
            let mut b = View::new();
            for &n in &names {
                b.insert(entry(n + 5000, 1));
                b.insert(entries[&n].clone());
            }
            for &n in &names {
                b.remove(&PeerName::from_u64(n + 5000));
            }
            check_invariant(&b);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.leaves.len(), b.leaves.len());
            for (x, y) in a.leaves.iter().zip(&b.leaves) {
                prop_assert!(x.same_as(y));
            }
        }
    }

    #[test]
    fn a_shared_pool_makes_equal_views_hold_one_copy_of_each_leaf() {
        let pool = crate::share::tests::shared_pool();
        let entries: Vec<_> = (0..1000).map(|n| entry(n, 1)).collect();
        let mut a: View = entries.iter().cloned().collect();
        let mut b: View = entries.iter().rev().cloned().collect();
        assert!(!a.same_leaves(&b.leaves));
        a.share(&pool);
        b.share(&pool);
        assert!(a.same_leaves(&b.leaves));
        // A change copies one leaf; the rest stay shared.
        b.insert(entry(500, 2));
        let shared = a.leaves.iter().zip(&b.leaves).filter(|(x, y)| Arc::ptr_eq(x, y)).count();
        assert_eq!(shared, a.leaves.len() - 1);
        assert_eq!(a.get(&PeerName::from_u64(500)).unwrap().version, 1, "the other view is untouched");
        // Sharing again pools the changed leaf: a view built afresh with the same entries
        // holds the very same leaves.
        b.share(&pool);
        let newer = b.get(&PeerName::from_u64(500)).unwrap().clone();
        let mut d: View =
            entries.iter().map(|e| if e.name == newer.name { newer.clone() } else { e.clone() }).collect();
        d.share(&pool);
        assert!(d.same_leaves(&b.leaves));
        // A private pool shares nothing.
        let mut c: View = entries.iter().cloned().collect();
        c.share(&Pool::default());
        assert!(!c.same_leaves(&a.leaves));
    }
}
