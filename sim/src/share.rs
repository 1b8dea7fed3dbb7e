//! The store of state that the routers of one world share (`router_core::share`).
//!
//! Every router of a world holds every peer's entry, its view cut into leaves, and a route
//! graph. Routers that agree hold equal copies; this store lets them hold one: the core asks
//! it for a value before keeping its own and checks the content of what it gets. Values are
//! held weakly, so the store keeps nothing alive; dead references are swept whenever the map
//! has doubled since the last sweep.

use std::sync::{Mutex, PoisonError, Weak};

use router_core::share::{Kind, Share, Shared};
use rustc_hash::FxHashMap;

/// One world's shared entries, leaves and graphs. The world runs on one thread; the lock is
/// what the core's `Share` bound (`Send + Sync`) asks of any store, and is never contended.
#[derive(Debug, Default)]
pub struct SharedState(Mutex<Maps>);

#[derive(Debug, Default)]
struct Maps {
    values: FxHashMap<(Kind, u64), Weak<dyn std::any::Any + Send + Sync>>,
    /// Size after the last sweep of dead references.
    swept: usize,
}

impl SharedState {
    /// Values alive in the store.
    pub fn live(&self) -> usize {
        let m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.values.values().filter(|w| w.strong_count() > 0).count()
    }
}

impl Share for SharedState {
    fn get(&self, kind: Kind, key: u64) -> Option<Shared> {
        // Nothing panics while the lock is held, but a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).values.get(&(kind, key)).and_then(Weak::upgrade)
    }

    fn put(&self, kind: Kind, key: u64, value: &Shared) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let weak = Shared::downgrade(value);
        let slot = m.values.entry((kind, key)).or_insert_with(|| weak.clone());
        if slot.strong_count() == 0 {
            *slot = weak;
        }
        if m.values.len() > 2 * m.swept + 1024 {
            m.values.retain(|_, w| w.strong_count() > 0);
            m.swept = m.values.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn values_are_held_weakly_and_dead_ones_are_swept() {
        let s = SharedState::default();
        let a: Shared = Arc::new(1u32);
        s.put(Kind::Entry, 7, &a);
        // A live value is not replaced.
        let b: Shared = Arc::new(2u32);
        s.put(Kind::Entry, 7, &b);
        let got = s.get(Kind::Entry, 7).expect("live");
        assert!(Arc::ptr_eq(&got, &a));
        // Kinds are separate key spaces.
        assert!(s.get(Kind::Leaf, 7).is_none());
        drop((a, got));
        assert!(s.get(Kind::Entry, 7).is_none(), "the store keeps nothing alive");
        s.put(Kind::Entry, 7, &b);
        assert!(Arc::ptr_eq(&s.get(Kind::Entry, 7).unwrap(), &b));
        for k in 0..5000 {
            let v: Shared = Arc::new(k);
            s.put(Kind::Graph, k, &v);
        }
        assert_eq!(s.live(), 1);
        assert!(s.0.lock().unwrap().values.len() <= 2100, "dead references are swept");
    }
}
