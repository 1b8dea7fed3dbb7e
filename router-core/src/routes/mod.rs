//! Routes over links established in both directions.
//!
//! Unicast: breadth-first search from ourselves, visiting neighbours in name order, so every
//! peer with the same view computes the same shortest paths. Broadcast: a flood from source
//! `S` follows the reverse of the unicast routes towards `S`. Each peer's parent for `S` is
//! its own next hop towards `S`; its children are the neighbours whose next hop towards `S`
//! is itself. With one view these pointers form a shortest-path tree rooted at `S`, so every
//! reachable peer gets each flood exactly once. Computing them needs one search from each
//! neighbour (done on first use after a change), not one per source.

use std::sync::Arc;

use crate::peer::PeerName;
use crate::topology::View;

mod graph;

pub use graph::Graph;

const NONE: u32 = u32::MAX;

/// Per peer, which of our neighbours is the next hop towards it: its position among our
/// neighbours (one byte when we have fewer than 254, else four), or [`Hops::SELF`] /
/// [`Hops::NONE`].
#[derive(Debug, Clone)]
enum Hops {
    Narrow(Vec<u8>),
    Wide(Vec<u32>),
}

impl Default for Hops {
    fn default() -> Self {
        Hops::Narrow(Vec::new())
    }
}

impl Hops {
    const NONE: u32 = u32::MAX;
    const SELF: u32 = u32::MAX - 1;

    /// `n` peers, all unreachable, for a router with `degree` neighbours; reuses `self`'s
    /// allocation when the width stays.
    fn reset(&mut self, n: usize, degree: usize) {
        let narrow = degree < usize::from(u8::MAX - 1);
        match self {
            Hops::Narrow(v) if narrow => {
                v.clear();
                v.resize(n, u8::MAX);
            }
            Hops::Wide(v) if !narrow => {
                v.clear();
                v.resize(n, u32::MAX);
            }
            _ if narrow => *self = Hops::Narrow(vec![u8::MAX; n]),
            _ => *self = Hops::Wide(vec![u32::MAX; n]),
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self {
            Hops::Narrow(v) => match v[i] {
                u8::MAX => Hops::NONE,
                0xfe => Hops::SELF,
                k => u32::from(k),
            },
            Hops::Wide(v) => v[i],
        }
    }

    fn set(&mut self, i: usize, k: u32) {
        match self {
            Hops::Narrow(v) => {
                v[i] = match k {
                    Hops::NONE => u8::MAX,
                    Hops::SELF => 0xfe,
                    k => u8::try_from(k).expect("narrow only below 254 neighbours"),
                }
            }
            Hops::Wide(v) => v[i] = k,
        }
    }
}

/// Unicast next hops and broadcast trees for one view of the topology.
///
/// What a router keeps of its own is small: a next hop per peer (one byte with fewer than
/// 254 neighbours) and, once something floods, one child bitset per peer (one byte per eight
/// neighbours). The graph may be shared with other routers; search space is borrowed only
/// while computing.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    graph: Arc<Graph>,
    me: u32,
    hops: Hops,
    /// Per peer, the smallest payload limit advertised along our path to it (`u16::MAX`
    /// where none is; empty when no link on the graph advertises one below `ceiling`).
    path_mtus: Vec<u16>,
    /// Limits at or above this constrain nothing (we never send more): with none below it,
    /// no per-peer limits are kept.
    ceiling: u16,
    /// Our children in every peer's broadcast tree, as bitsets over our neighbours: bit `k`
    /// of the `stride` bytes from `s * stride` is set when our `k`-th neighbour's next hop
    /// towards `s` is us. One load per flood; computed on first use after a change.
    child_masks: Vec<u8>,
    stride: usize,
    masks_ready: bool,
    children: Vec<PeerName>,
    /// BFS work space, released after each computation (it is as large as the view).
    scratch_queue: Vec<u32>,
    /// The key the graph's name index hashes with.
    key: [u64; 4],
}

/// Which peers a [`Routes`] reached, kept across a recomputation to tell what changed. It
/// holds names, not the graph, so that a graph no one else holds is still rebuilt in place.
#[derive(Debug)]
pub(crate) struct Reach {
    names: Vec<PeerName>,
}

impl Reach {
    /// Peers reachable before and not in `now` (lost), and the other way round (found);
    /// `me` is in neither.
    pub(crate) fn changes(&self, now: &Routes, me: PeerName) -> (Vec<PeerName>, Vec<PeerName>) {
        let (mut lost, mut found) = (Vec::new(), Vec::new());
        let mut b = self.names.iter().copied().filter(|&p| p != me).peekable();
        let mut a = now.reachable().filter(|&p| p != me).peekable();
        loop {
            match (b.peek(), a.peek()) {
                (None, None) => break,
                (Some(&x), Some(&y)) if x == y => {
                    b.next();
                    a.next();
                }
                (Some(&x), Some(&y)) if x < y => {
                    lost.push(x);
                    b.next();
                }
                (Some(&x), None) => {
                    lost.push(x);
                    b.next();
                }
                (_, Some(&y)) => {
                    found.push(y);
                    a.next();
                }
            }
        }
        (lost, found)
    }
}

fn reachable_in<'a>(g: &'a Graph, hops: &'a Hops) -> impl Iterator<Item = PeerName> + 'a {
    g.names.iter().enumerate().filter(|&(i, _)| hops.get(i) != Hops::NONE).map(|(_, n)| *n)
}

impl Routes {
    /// Computes unicast routes from `me` over `view`. Links count only when both ends
    /// advertise them as established.
    pub fn build(view: &View, me: PeerName) -> Routes {
        let mut r = Routes::default();
        r.rebuild(view, me);
        r
    }

    /// No routes yet; graphs built here index names with a hash keyed by `key`.
    pub(crate) fn keyed(key: [u64; 4]) -> Routes {
        Routes { graph: Arc::new(Graph::keyed(key)), key, ..Routes::default() }
    }

    /// The key graphs built here index names with.
    pub(crate) fn key(&self) -> [u64; 4] {
        self.key
    }

    /// Recomputes in place over `view`, reusing the graph's allocations when no other routes
    /// share it.
    pub fn rebuild(&mut self, view: &View, me: PeerName) {
        match Arc::get_mut(&mut self.graph) {
            Some(g) => g.rebuild(view),
            None => self.graph = Arc::new(Graph::build_keyed(view, self.key)),
        }
        self.recompute(me);
    }

    /// Recomputes in place over a graph (perhaps shared with other routers).
    pub(crate) fn rebuild_on(&mut self, graph: Arc<Graph>, me: PeerName) {
        self.graph = graph;
        self.recompute(me);
    }

    /// What is reachable now, to compare with after the next recomputation.
    pub(crate) fn reach(&self) -> Reach {
        Reach { names: self.reachable().collect() }
    }

    /// Everything that depends on who we are, over the current graph.
    fn recompute(&mut self, me: PeerName) {
        self.me = self.graph.index.get(&me).copied().unwrap_or(NONE);
        self.compute_unicast();
        self.masks_ready = false;
        self.child_masks = Vec::new();
        self.release_scratch();
    }

    /// Whether `self` and `other` were computed over one shared graph (see [`crate::share`]).
    #[cfg(feature = "many-routers")]
    pub fn shares_graph_with(&self, other: &Routes) -> bool {
        Arc::ptr_eq(&self.graph, &other.graph)
    }

    fn release_scratch(&mut self) {
        self.scratch_queue = Vec::new();
    }

    fn neighbours(&self, i: u32) -> &[u32] {
        self.graph.neighbours(i)
    }

    /// For every peer, the neighbour of `root` through which `root` reaches it (`root`
    /// itself for `root`; [`NONE`] if unreachable): one breadth-first search that hands each
    /// peer its parent's first step as it is found (a neighbour of `root` is its own).
    fn first_steps_from(&mut self, root: u32, out: &mut Vec<u32>) {
        out.clear();
        out.resize(self.graph.names.len(), NONE);
        let mut queue = std::mem::take(&mut self.scratch_queue);
        queue.clear();
        out[root as usize] = root;
        queue.push(root);
        let mut head = 0;
        while let Some(&u) = queue.get(head) {
            head += 1;
            let step = out[u as usize];
            for &v in self.graph.neighbours(u) {
                if out[v as usize] == NONE {
                    out[v as usize] = if u == root { v } else { step };
                    queue.push(v);
                }
            }
        }
        self.scratch_queue = queue;
    }

    fn compute_unicast(&mut self) {
        let n = self.graph.names.len();
        let mut hops = std::mem::take(&mut self.hops);
        if self.me == NONE {
            hops.reset(n, 0);
            self.hops = hops;
            return;
        }
        hops.reset(n, self.graph.neighbours(self.me).len());
        let mut steps = Vec::new();
        self.first_steps_from(self.me, &mut steps);
        self.compute_path_mtus();
        let mine = self.graph.neighbours(self.me);
        for (i, &v) in steps.iter().enumerate() {
            let k = match v {
                NONE => Hops::NONE,
                v if v == self.me => Hops::SELF,
                // Our neighbours are sorted by index, as the graph lists them.
                v => mine.binary_search(&v).map_or(Hops::NONE, |k| k as u32),
            };
            hops.set(i, k);
        }
        self.hops = hops;
    }

    /// For every peer, the smallest payload limit along our path to it: one breadth-first
    /// search from us that visits as [`Routes::first_steps_from`] does, so each peer's path
    /// is the one its unicast route takes.
    fn compute_path_mtus(&mut self) {
        self.path_mtus.clear();
        let ceiling = if self.ceiling == 0 { u16::MAX } else { self.ceiling };
        if self.me == NONE || self.graph.mtus.iter().all(|&m| m >= ceiling) {
            return;
        }
        let n = self.graph.names.len();
        let mut seen = vec![false; n];
        self.path_mtus.resize(n, u16::MAX);
        let mut queue = std::mem::take(&mut self.scratch_queue);
        queue.clear();
        queue.push(self.me);
        seen[self.me as usize] = true;
        let mut head = 0;
        while let Some(&u) = queue.get(head) {
            head += 1;
            let via = self.path_mtus[u as usize];
            for (&v, &m) in self.graph.neighbours(u).iter().zip(self.graph.link_mtus(u)) {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    self.path_mtus[v as usize] = via.min(m);
                    queue.push(v);
                }
            }
        }
        self.scratch_queue = queue;
    }

    /// Sets the largest payload we ever send: advertised limits at or above it are not kept
    /// (the next recomputation applies it).
    pub(crate) fn set_ceiling(&mut self, ceiling: u16) {
        self.ceiling = ceiling;
    }

    /// The smallest payload limit advertised along our route to `dst` below our ceiling
    /// (`None`: none is).
    pub fn path_mtu(&self, dst: PeerName) -> Option<u16> {
        if self.path_mtus.is_empty() {
            return None;
        }
        let &i = self.graph.index.get(&dst)?;
        self.path_mtus.get(i as usize).copied().filter(|&m| m != u16::MAX)
    }

    /// The neighbour to send to for `dst`, or `None` if `dst` is unreachable (or ourselves).
    pub fn next_hop(&self, dst: PeerName) -> Option<PeerName> {
        let &i = self.graph.index.get(&dst)?;
        match self.hops.get(i as usize) {
            Hops::NONE | Hops::SELF => None,
            k => Some(self.graph.names[self.neighbours(self.me)[k as usize] as usize]),
        }
    }

    /// Hops from us to every reachable peer over established links (us at 0), in name order.
    /// One search over the graph: O(peers + links).
    pub fn distances(&self) -> Vec<(PeerName, u32)> {
        if self.me == NONE {
            return Vec::new();
        }
        let n = self.graph.names.len();
        let mut dist = vec![NONE; n];
        let mut queue = vec![self.me];
        dist[self.me as usize] = 0;
        let mut head = 0;
        while let Some(&u) = queue.get(head) {
            head += 1;
            for &v in self.neighbours(u) {
                if dist[v as usize] == NONE {
                    dist[v as usize] = dist[u as usize] + 1;
                    queue.push(v);
                }
            }
        }
        self.graph.names.iter().zip(dist).filter(|&(_, d)| d != NONE).map(|(n, d)| (*n, d)).collect()
    }

    /// Hops from us to `dst` over established links: one search, so for many peers use
    /// [`Routes::distances`].
    pub fn distance(&self, dst: PeerName) -> Option<u32> {
        self.distances().into_iter().find(|&(p, _)| p == dst).map(|(_, d)| d)
    }

    /// Every peer reachable over established links, us included, in name order.
    pub fn reachable(&self) -> impl Iterator<Item = PeerName> + '_ {
        reachable_in(&self.graph, &self.hops)
    }

    /// Our established neighbours (both ends agree), in name order.
    pub fn neighbours_of_me(&self) -> impl Iterator<Item = PeerName> + '_ {
        let n: &[u32] = if self.me == NONE { &[] } else { self.neighbours(self.me) };
        n.iter().map(|&j| self.graph.names[j as usize])
    }

    /// Our children in `src`'s broadcast tree: the neighbours whose next hop towards `src`
    /// is us. Floods from `src` are forwarded to them.
    pub fn broadcast_children(&mut self, src: PeerName) -> &[PeerName] {
        self.children.clear();
        let Some(&s) = self.graph.index.get(&src) else { return &self.children };
        if self.me == NONE {
            return &self.children;
        }
        if !self.masks_ready {
            if self.hops.get(s as usize) == Hops::NONE {
                // Nothing to forward; the masks wait for a source we can reach.
                return &self.children;
            }
            self.compute_child_masks();
        }
        // A source we cannot reach is in no neighbour's search either (links are
        // established both ways): its mask is empty, with no need to read its hop.
        let at = s as usize * self.stride;
        let mine = self.graph.neighbours(self.me);
        for (w, &byte) in self.child_masks[at..at + self.stride].iter().enumerate() {
            let mut bits = byte;
            while bits != 0 {
                let k = w * 8 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.children.push(self.graph.names[mine[k] as usize]);
            }
        }
        &self.children
    }

    /// One search from each neighbour: where its next hop towards a peer is us, it is our
    /// child in that peer's tree.
    fn compute_child_masks(&mut self) {
        let n = self.graph.names.len();
        let deg = self.neighbours(self.me).len();
        self.stride = deg.div_ceil(8);
        self.child_masks.clear();
        self.child_masks.resize(n * self.stride, 0);
        let mut hops = Vec::new();
        for k in 0..deg {
            let j = self.neighbours(self.me)[k];
            self.first_steps_from(j, &mut hops);
            let (byte, bit) = (k / 8, 1u8 << (k % 8));
            for (s, &h) in hops.iter().enumerate() {
                if h == self.me && s != j as usize {
                    self.child_masks[s * self.stride + byte] |= bit;
                }
            }
        }
        self.masks_ready = true;
        self.release_scratch();
    }

    /// Our parent in `src`'s broadcast tree: our own next hop towards `src`.
    pub fn broadcast_parent(&self, src: PeerName) -> Option<PeerName> {
        self.next_hop(src)
    }

    /// Number of peers in the view.
    pub fn len(&self) -> usize {
        self.graph.names.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.graph.names.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::peer::PeerUid;
    use crate::wire::gossip::{ConnInfo, PeerEntry};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet, VecDeque};
    use std::sync::Arc;

    /// A view where each undirected edge is advertised as established by both ends.
    pub(crate) fn view_of(n: u64, edges: &[(u64, u64)]) -> View {
        let mut adj: BTreeMap<u64, BTreeSet<u64>> = (0..n).map(|i| (i, BTreeSet::new())).collect();
        for &(a, b) in edges {
            if a != b {
                adj.get_mut(&a).unwrap().insert(b);
                adj.get_mut(&b).unwrap().insert(a);
            }
        }
        adj.into_iter()
            .map(|(i, ns)| {
                let name = PeerName::from_u64(i + 1);
                let conns = ns
                    .into_iter()
                    .map(|j| ConnInfo {
                        peer: PeerName::from_u64(j + 1),
                        established: true,
                        outbound: i < j,
                        addr: None,
                        mtu: None,
                    })
                    .collect();
                Arc::new(PeerEntry { name, uid: PeerUid(i), version: 1, nickname: String::new(), conns })
            })
            .collect()
    }

    fn p(i: u64) -> PeerName {
        PeerName::from_u64(i + 1)
    }

    #[test]
    fn line_routes_through_the_middle_and_ties_break_by_name() {
        // 0 - 1 - 3 and 0 - 2 - 3: two shortest paths to 3; the lower name (1) wins.
        let v = view_of(4, &[(0, 1), (1, 3), (0, 2), (2, 3)]);
        let r = Routes::build(&v, p(0));
        assert_eq!(r.next_hop(p(3)), Some(p(1)));
        assert_eq!(r.distance(p(3)), Some(2));
        assert_eq!(r.next_hop(p(0)), None);
    }

    #[test]
    fn one_sided_links_are_not_used() {
        let mut v = view_of(2, &[(0, 1)]);
        let mut one_sided = PeerEntry::clone(&v[&p(1)]);
        one_sided.conns[0].established = false;
        v.insert(Arc::new(one_sided));
        let r = Routes::build(&v, p(0));
        assert_eq!(r.next_hop(p(1)), None);
        assert_eq!(r.reachable().collect::<Vec<_>>(), vec![p(0)]);
    }

    #[test]
    fn a_hub_with_hundreds_of_neighbours_routes_and_floods_to_each() {
        // 300 spokes: more neighbours than one-byte next hops can name.
        let edges: Vec<(u64, u64)> = (1..=300).map(|i| (0, i)).chain([(1, 2)]).collect();
        let v = view_of(301, &edges);
        let mut hub = Routes::build(&v, p(0));
        assert!(matches!(hub.hops, Hops::Wide(_)));
        for i in 1..=300 {
            assert_eq!(hub.next_hop(p(i)), Some(p(i)));
        }
        // A flood from spoke 1 reaches every spoke but 1 and 2 (2 hears it from 1 directly).
        let children = hub.broadcast_children(p(1)).to_vec();
        assert_eq!(children.len(), 298);
        assert!(!children.contains(&p(1)) && !children.contains(&p(2)));
        let spoke = Routes::build(&v, p(7));
        assert!(matches!(spoke.hops, Hops::Narrow(_)));
        assert_eq!(spoke.next_hop(p(250)), Some(p(0)));
        assert_eq!(spoke.distance(p(250)), Some(2));
    }

    #[test]
    fn a_flood_from_a_source_we_cannot_reach_goes_nowhere() {
        // Two components: 0 - 1 - 2 and 3 - 4.
        let v = view_of(5, &[(0, 1), (1, 2), (3, 4)]);
        let mut r = Routes::build(&v, p(1));
        // Before the masks are computed, and after (a flood from 0 computes them).
        assert!(r.broadcast_children(p(3)).is_empty());
        assert_eq!(r.broadcast_children(p(0)), [p(2)]);
        assert!(r.masks_ready);
        assert!(r.broadcast_children(p(3)).is_empty());
        assert!(r.broadcast_children(p(4)).is_empty());
        assert_eq!(r.broadcast_children(p(1)), [p(0), p(2)]);
    }

    #[test]
    fn reach_changes_name_peers_lost_and_found() {
        let v = view_of(4, &[(0, 1), (1, 2), (2, 3)]);
        let mut r = Routes::build(&v, p(0));
        let before = r.reach();
        // Cut 1 - 2: peers 2 and 3 are lost.
        let cut = view_of(4, &[(0, 1), (2, 3)]);
        r.rebuild(&cut, p(0));
        assert_eq!(before.changes(&r, p(0)), (vec![p(2), p(3)], vec![]));
        let before = r.reach();
        r.rebuild(&v, p(0));
        assert_eq!(before.changes(&r, p(0)), (vec![], vec![p(2), p(3)]));
        let before = r.reach();
        r.rebuild(&v, p(0));
        assert_eq!(before.changes(&r, p(0)), (vec![], vec![]));
    }

    /// A random connected graph: a random spanning tree plus extra edges.
    pub(crate) fn arb_connected() -> impl Strategy<Value = (u64, Vec<(u64, u64)>)> {
        (2u64..40).prop_flat_map(|n| {
            let tree = proptest::collection::vec(any::<u64>(), (n - 1) as usize);
            let extra = proptest::collection::vec((0..n, 0..n), 0..(n as usize * 2));
            (Just(n), tree, extra).prop_map(|(n, tree, extra)| {
                let mut edges: Vec<(u64, u64)> =
                    tree.iter().enumerate().map(|(i, r)| ((i as u64) + 1, r % (i as u64 + 1))).collect();
                edges.extend(extra);
                (n, edges)
            })
        })
    }

    fn bfs_dist(v: &View, from: PeerName) -> BTreeMap<PeerName, u32> {
        let mut d = BTreeMap::from([(from, 0)]);
        let mut q = VecDeque::from([from]);
        while let Some(u) = q.pop_front() {
            for c in &v[&u].conns {
                if !d.contains_key(&c.peer) {
                    d.insert(c.peer, d[&u] + 1);
                    q.push_back(c.peer);
                }
            }
        }
        d
    }

    proptest! {
        #[test]
        fn unicast_routes_are_loop_free_and_shortest((n, edges) in arb_connected()) {
            let v = view_of(n, &edges);
            let routes: BTreeMap<PeerName, Routes> = v.keys().map(|&me| (me, Routes::build(&v, me))).collect();
            for &src in v.keys() {
                let truth = bfs_dist(&v, src);
                for &dst in v.keys() {
                    // Follow next hops from src to dst: every step brings dst one hop closer.
                    let mut at = src;
                    let mut steps = 0;
                    while at != dst {
                        let next = routes[&at].next_hop(dst).expect("connected graph: a route exists");
                        prop_assert!(v[&at].conns.iter().any(|c| c.peer == next), "next hop is a neighbour");
                        at = next;
                        steps += 1;
                        prop_assert!(steps <= n, "routing loop");
                    }
                    prop_assert_eq!(steps, u64::from(truth[&dst]));
                    prop_assert_eq!(routes[&src].distance(dst), Some(truth[&dst]));
                }
            }
        }

        #[test]
        fn every_broadcast_tree_reaches_each_peer_exactly_once((n, edges) in arb_connected()) {
            let v = view_of(n, &edges);
            let mut routes: BTreeMap<PeerName, Routes> = v.keys().map(|&me| (me, Routes::build(&v, me))).collect();
            for &src in v.keys() {
                // Simulate the flood: forward to children; a receiver accepts only from its parent.
                let mut received: BTreeMap<PeerName, u32> = BTreeMap::new();
                let mut queue = VecDeque::from([(src, src)]);
                while let Some((from, at)) = queue.pop_front() {
                    if at != src {
                        if routes.get_mut(&at).unwrap().broadcast_parent(src) != Some(from) { continue; }
                        *received.entry(at).or_default() += 1;
                    }
                    let children = routes.get_mut(&at).unwrap().broadcast_children(src).to_vec();
                    for c in children { queue.push_back((at, c)); }
                }
                prop_assert_eq!(received.len() as u64, n - 1);
                prop_assert!(received.values().all(|&k| k == 1));
            }
        }
    }
}
