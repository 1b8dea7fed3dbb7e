//! The part of the routes that does not depend on whose they are: the view's names, their
//! index, and the adjacency of links established in both directions.

use std::sync::Arc;

use crate::peer::PeerName;
use crate::topology::View;
use crate::view::Leaf;
use crate::wire::gossip::PeerEntry;

/// The smallest UDP payload every path carries (a 576-byte IPv4 packet).
const MTU_FLOOR: u16 = 548;

/// What the routes need of a view that does not depend on whose routes they are: the names,
/// their index and the established adjacency. Routers whose views are equal may share one
/// (see [`crate::share`]).
#[derive(Debug)]
pub struct Graph {
    /// For a pooled graph, the view's leaves, to tell whether it was built from an equal
    /// view; empty otherwise.
    pub(super) leaves: Vec<Arc<Leaf>>,
    pub(super) names: Vec<PeerName>,
    /// Keyed (aHash): names are chosen by peers, which must not be able to make them collide.
    pub(super) index: std::collections::HashMap<PeerName, u32, ahash::RandomState>,
    /// Adjacency in compressed rows: neighbours of `i` are `edges[offsets[i]..offsets[i + 1]]`.
    pub(super) offsets: Vec<u32>,
    pub(super) edges: Vec<u32>,
    /// Per edge (as `edges`), the largest UDP payload its source end advertises for that
    /// direction; `u16::MAX` where it advertises none.
    pub(super) mtus: Vec<u16>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph::keyed(crate::table::FIXED_KEY)
    }
}

impl Graph {
    /// An empty graph whose name index hashes with `key`.
    pub(crate) fn keyed(key: [u64; 4]) -> Graph {
        Graph {
            leaves: Vec::new(),
            names: Vec::new(),
            index: std::collections::HashMap::with_hasher(ahash::RandomState::with_seeds(
                key[0], key[1], key[2], key[3],
            )),
            offsets: Vec::new(),
            edges: Vec::new(),
            mtus: Vec::new(),
        }
    }

    /// The graph of `view`. Links count only when both ends advertise them as established.
    pub fn build(view: &View) -> Graph {
        Graph::build_keyed(view, crate::table::FIXED_KEY)
    }

    /// [`Graph::build`], the name index hashing with `key`.
    pub(crate) fn build_keyed(view: &View, key: [u64; 4]) -> Graph {
        let mut g = Graph::keyed(key);
        g.rebuild(view);
        g
    }

    /// [`Graph::build_keyed`] for sharing: also keeps the view's leaves, which
    /// [`Graph::built_from`] checks against a view before the graph is reused for it.
    pub(crate) fn build_shared(view: &View, key: [u64; 4]) -> Graph {
        let mut g = Graph::build_keyed(view, key);
        g.leaves.extend(view.leaves().iter().cloned());
        g
    }

    /// Rebuilds in place, reusing the allocations (and the name index, when the set of peers
    /// did not change).
    pub(super) fn rebuild(&mut self, view: &View) {
        let same_names = self.names.len() == view.len() && self.names.iter().zip(view.keys()).all(|(a, b)| a == b);
        if !same_names {
            self.names.clear();
            self.names.extend(view.keys().copied());
            self.index.clear();
            self.index.reserve(self.names.len());
            for (i, n) in self.names.iter().enumerate() {
                self.index.insert(*n, u32::try_from(i).expect("fewer than 2^32 peers"));
            }
        }
        let entries: Vec<&PeerEntry> = view.values().map(|e| &**e).collect();
        self.leaves.clear();
        self.offsets.clear();
        self.edges.clear();
        self.mtus.clear();
        self.offsets.push(0);
        for e in &entries {
            for c in e.conns.iter().filter(|c| c.established) {
                let Some(&j) = self.index.get(&c.peer) else { continue };
                if established_to(entries[j as usize], e.name) {
                    self.edges.push(j);
                    // No path is assumed narrower than the protocol's floor, whatever a peer says.
                    self.mtus.push(c.mtu.map_or(u16::MAX, |m| m.max(MTU_FLOOR)));
                }
            }
            self.offsets.push(u32::try_from(self.edges.len()).expect("fewer than 2^32 links"));
        }
    }

    /// Whether this graph was built from exactly these entries.
    pub(crate) fn built_from(&self, view: &View) -> bool {
        view.same_leaves(&self.leaves)
    }

    pub(super) fn neighbours(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.edges[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The advertised payload limits of `i`'s links, as [`Graph::neighbours`] lists them.
    pub(super) fn link_mtus(&self, i: u32) -> &[u16] {
        let i = i as usize;
        &self.mtus[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// Whether `e` advertises an established link to `peer`.
fn established_to(e: &PeerEntry, peer: PeerName) -> bool {
    e.conns.binary_search_by_key(&peer, |c| c.peer).is_ok_and(|i| e.conns[i].established)
}
