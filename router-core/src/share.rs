//! Sharing immutable state between the routers of one process.
//!
//! Every router holds every peer's entry and a route graph of its view. A process that runs
//! thousands of routers (the simulator) would hold thousands of equal copies of each. A driver
//! that enables the `many-routers` feature may give each router a [`Share`]: a store, owned by
//! the driver, of weakly held values under a kind and a key. The core looks a value up before
//! keeping its own, and uses the stored one only when it is the very same content (entries
//! compared in full, leaves and graphs by the identity of the entries they were built from), so
//! sharing changes no behaviour. Without a store nothing is shared; a production router has
//! one router per process and has none.

use core::fmt;
use std::any::Any;
use std::sync::Arc;

use crate::routes::Graph;
use crate::view::{Leaf, View};
use crate::wire::gossip::PeerEntry;

/// A value in a [`Share`]: an immutable part of a router's state, opaque to the driver.
pub type Shared = Arc<dyn Any + Send + Sync>;

/// What a [`Shared`] value is; keys of different kinds are unrelated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A peer's entry, keyed by a hash of its name, incarnation and version.
    Entry,
    /// A run of a view's entries, keyed by a hash of their names, incarnations and versions.
    Leaf,
    /// The route graph of a whole view, keyed by a hash of its leaves.
    Graph,
}

/// A store of shared values that the driver keeps for the routers it runs.
///
/// The store holds values weakly: a value that no router uses any more is gone, and `get`
/// returns only live ones. Keys are hashes: two values may collide under one key, and the
/// core checks the content of whatever `get` returns before it uses it.
pub trait Share: Send + Sync + fmt::Debug {
    /// The live value stored under `kind` and `key`, if there is one.
    fn get(&self, kind: Kind, key: u64) -> Option<Shared>;
    /// Stores `value` under `kind` and `key` unless a live value is there already.
    fn put(&self, kind: Kind, key: u64, value: &Shared);
}

/// The router's handle on its driver's store, if it was given one.
#[derive(Clone, Default)]
pub(crate) struct Pool(Option<Arc<dyn Share>>);

impl Pool {
    #[cfg(feature = "many-routers")]
    pub(crate) fn new(share: Option<Arc<dyn Share>>) -> Self {
        Pool(share)
    }

    /// Whether values are shared at all.
    pub(crate) fn is_shared(&self) -> bool {
        self.0.is_some()
    }

    /// The stored value under `key` that `same` accepts, downcast; or `value`, now stored
    /// (unless another value lives under its key: then `value` stays apart).
    fn intern<T: Any + Send + Sync>(
        &self,
        kind: Kind,
        key: u64,
        value: Arc<T>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Arc<T> {
        let Some(store) = &self.0 else { return value };
        match store.get(kind, key).map(Arc::downcast::<T>) {
            Some(Ok(have)) if same(&have, &value) => have,
            Some(_) => value,
            None => {
                let v: Shared = value.clone();
                store.put(kind, key, &v);
                value
            }
        }
    }

    /// The stored copy of an entry equal to `e`, or `e` itself (now stored).
    pub(crate) fn entry(&self, e: Arc<PeerEntry>) -> Arc<PeerEntry> {
        if self.0.is_none() {
            return e;
        }
        let key = mix(mix(e.name.to_u64(), e.uid.0), e.version);
        self.intern(Kind::Entry, key, e, |have, e| have == e)
    }

    /// The stored copy of a leaf holding the very same entries as `l` (whose key is set), or
    /// `l` itself (now stored).
    pub(crate) fn leaf(&self, l: Arc<Leaf>) -> Arc<Leaf> {
        self.intern(Kind::Leaf, l.key, l, Leaf::same_as)
    }

    /// The route graph of `view`, whose [`View::leaf_key`] is `key`: the stored one when it was
    /// built from the very same leaves, else a new one (stored unless the key is taken).
    /// The graph's name index hashes with `hash_key`.
    pub(crate) fn graph(&self, view: &View, key: u64, hash_key: [u64; 4]) -> Arc<Graph> {
        let Some(store) = &self.0 else { return Arc::new(Graph::build_keyed(view, hash_key)) };
        if let Some(Ok(g)) = store.get(Kind::Graph, key).map(Arc::downcast::<Graph>) {
            if g.built_from(view) {
                return g;
            }
        }
        let g = Arc::new(Graph::build_shared(view, hash_key));
        let v: Shared = g.clone();
        store.put(Kind::Graph, key, &v);
        g
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Pool(shared)" } else { "Pool(private)" })
    }
}

/// Combines two words into a key (splitmix64's finaliser over their sum).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.rotate_left(17) ^ b.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Mutex, Weak};

    /// The simplest store: a map of weak references.
    #[derive(Debug, Default)]
    pub(crate) struct TestStore(Mutex<HashMap<(Kind, u64), Weak<dyn Any + Send + Sync>>>);

    impl Share for TestStore {
        fn get(&self, kind: Kind, key: u64) -> Option<Shared> {
            self.0.lock().unwrap().get(&(kind, key)).and_then(Weak::upgrade)
        }
        fn put(&self, kind: Kind, key: u64, value: &Shared) {
            let mut m = self.0.lock().unwrap();
            if m.get(&(kind, key)).and_then(Weak::upgrade).is_none() {
                m.insert((kind, key), Arc::downgrade(value));
            }
        }
    }

    pub(crate) fn shared_pool() -> Pool {
        Pool(Some(Arc::new(TestStore::default())))
    }

    fn entry(n: u64, version: u64, conn: u64) -> PeerEntry {
        use crate::peer::{PeerName, PeerUid};
        use crate::wire::gossip::ConnInfo;
        PeerEntry {
            name: PeerName::from_u64(n),
            uid: PeerUid(n),
            version,
            nickname: String::new(),
            conns: vec![ConnInfo {
                peer: PeerName::from_u64(conn),
                established: true,
                outbound: true,
                addr: None,
                mtu: None,
            }],
        }
    }

    #[test]
    fn a_shared_pool_keeps_one_copy_of_equal_entries() {
        let pool = shared_pool();
        let a = pool.entry(Arc::new(entry(1, 2, 3)));
        // The same entry decoded again (by another router) becomes the stored copy.
        let b = pool.entry(Arc::new(entry(1, 2, 3)));
        assert!(Arc::ptr_eq(&a, &b));
        // Same name, incarnation and version but other contents: kept apart, never mixed.
        let odd = pool.entry(Arc::new(entry(1, 2, 4)));
        assert!(!Arc::ptr_eq(&a, &odd));
        assert_eq!(odd.conns[0].peer.to_u64(), 4);
        // Another version is another entry.
        let c = pool.entry(Arc::new(entry(1, 3, 3)));
        assert!(!Arc::ptr_eq(&a, &c));
        // An entry no router holds is not kept alive by the store.
        drop((a, b));
        let d = pool.entry(Arc::new(entry(1, 2, 3)));
        assert_eq!(Arc::strong_count(&d), 1);
    }

    #[test]
    fn a_private_pool_shares_nothing() {
        let pool = Pool::default();
        let a = pool.entry(Arc::new(entry(1, 2, 3)));
        let b = pool.entry(Arc::new(entry(1, 2, 3)));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(!pool.is_shared());
    }
}
