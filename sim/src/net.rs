//! The underlay: which hosts reach each other, and what each link does to a datagram.
//! A sans-IO model: it decides fates; the world schedules deliveries.

use rand_chacha::ChaCha8Rng;
use router_core::{Duration, Instant};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::rng::{below, chance, stream};
use crate::scenario::{LinkClass, Scenario, Shape};

/// Why the network dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetDrop {
    /// No underlay link between the hosts.
    NoLink,
    /// A partition or one-way partition.
    Partition,
    /// The link is cut.
    Cut,
    /// UDP is blocked between the hosts.
    UdpBlocked,
    /// Random or burst loss.
    Loss,
    /// Larger than the link MTU.
    Mtu,
    /// The link's queue was full.
    Queue,
    /// The receiving host is down.
    HostDown,
}

/// What happens to a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered at `at`, and a second copy at `dup` if duplicated.
    Deliver {
        /// Arrival.
        at: Instant,
        /// Arrival of a duplicate.
        dup: Option<Instant>,
    },
    /// Dropped.
    Drop(NetDrop),
}

#[derive(Debug)]
struct Direction {
    busy_until: Instant,
    in_burst: bool,
    rng: ChaCha8Rng,
}

/// The underlay network.
#[derive(Debug)]
pub struct Underlay {
    n: u32,
    full_mesh: bool,
    classes: Vec<LinkClass>,
    default_class: u16,
    links: FxHashMap<(u32, u32), u16>,
    neighbours: Vec<Vec<u32>>,
    dirs: FxHashMap<(u32, u32), Direction>,
    blocked: FxHashSet<(u32, u32)>,
    cut: FxHashSet<(u32, u32)>,
    udp_blocked: FxHashSet<(u32, u32)>,
    /// UDP blocked in one direction only: (from, to).
    udp_blocked_one_way: FxHashSet<(u32, u32)>,
    /// The names of `classes`.
    class_names: Vec<String>,
    /// Links whose MTU a fault changed.
    mtu: FxHashMap<(u32, u32), usize>,
    seed: u64,
}

fn key(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl Underlay {
    /// Whether every host reaches every other (no links are listed then).
    pub fn is_full_mesh(&self) -> bool {
        self.full_mesh
    }

    /// Builds the underlay a scenario describes.
    pub fn build(s: &Scenario, seed: u64) -> Underlay {
        let names = s.host_names();
        let n = names.len() as u32;
        let idx = |name: &str| names.iter().position(|h| h == name).expect("validated") as u32;
        let mut classes = vec![s.class(&s.underlay.class).expect("validated")];
        let mut class_names = vec![s.underlay.class.clone()];
        let mut u = Underlay {
            n,
            full_mesh: s.underlay.shape == Shape::FullMesh,
            classes: Vec::new(),
            default_class: 0,
            links: FxHashMap::default(),
            neighbours: vec![Vec::new(); n as usize],
            dirs: FxHashMap::default(),
            blocked: FxHashSet::default(),
            cut: FxHashSet::default(),
            udp_blocked: FxHashSet::default(),
            udp_blocked_one_way: FxHashSet::default(),
            class_names: Vec::new(),
            mtu: FxHashMap::default(),
            seed,
        };
        let mut edges: Vec<(u32, u32)> = Vec::new();
        match s.underlay.shape {
            Shape::FullMesh => {}
            Shape::Line => edges.extend((1..n).map(|i| (i - 1, i))),
            Shape::Ring => {
                edges.extend((1..n).map(|i| (i - 1, i)));
                if n > 2 {
                    edges.push((n - 1, 0));
                }
            }
            Shape::Star => edges.extend((1..n).map(|i| (0, i))),
            Shape::Random => {
                let mut r = stream(seed, "underlay", 0);
                for i in 1..n {
                    edges.push((below(&mut r, u64::from(i)) as u32, i));
                }
                let want = (u64::from(n) * s.underlay.degree as u64 / 2).saturating_sub(u64::from(n) - 1);
                let mut tries = 0;
                let mut have: FxHashSet<(u32, u32)> = edges.iter().map(|&(a, b)| key(a, b)).collect();
                while (have.len() as u64) < want + u64::from(n) - 1 && tries < want * 20 {
                    tries += 1;
                    let (a, b) = (below(&mut r, u64::from(n)) as u32, below(&mut r, u64::from(n)) as u32);
                    if a != b && have.insert(key(a, b)) {
                        edges.push((a, b));
                    }
                }
            }
            Shape::Explicit => edges.extend(s.underlay.links.iter().map(|[a, b]| (idx(a), idx(b)))),
        }
        for (a, b) in edges {
            if a != b && u.links.insert(key(a, b), 0).is_none() {
                u.neighbours[a as usize].push(b);
                u.neighbours[b as usize].push(a);
            }
        }
        for l in &s.links {
            let ci = match class_names.iter().position(|c| *c == l.class) {
                Some(i) => i,
                None => {
                    class_names.push(l.class.clone());
                    classes.push(s.class(&l.class).expect("validated"));
                    classes.len() - 1
                }
            } as u16;
            let (a, b) = (idx(&l.a), idx(&l.b));
            if u.links.insert(key(a, b), ci).is_none() && !u.full_mesh {
                u.neighbours[a as usize].push(b);
                u.neighbours[b as usize].push(a);
            }
        }
        for nb in &mut u.neighbours {
            nb.sort_unstable();
        }
        // Classes that faults switch links to.
        for f in &s.faults {
            if let crate::scenario::FaultAction::LinkClass { class, .. } = &f.action {
                if !class_names.contains(class) {
                    class_names.push(class.clone());
                    classes.push(s.class(class).expect("validated"));
                }
            }
        }
        u.classes = classes;
        u.class_names = class_names;
        u
    }

    /// Number of hosts.
    pub fn len(&self) -> u32 {
        self.n
    }

    /// Whether there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether the underlay links `a` and `b` (cut or not).
    pub fn linked(&self, a: u32, b: u32) -> bool {
        a != b && (self.full_mesh || self.links.contains_key(&key(a, b)))
    }

    /// Underlay neighbours of `a`.
    pub fn neighbours(&self, a: u32) -> Vec<u32> {
        if self.full_mesh {
            (0..self.n).filter(|&b| b != a).collect()
        } else {
            self.neighbours[a as usize].clone()
        }
    }

    fn class(&self, a: u32, b: u32) -> &LinkClass {
        let c = self.links.get(&key(a, b)).copied().unwrap_or(self.default_class);
        &self.classes[c as usize]
    }

    /// Whether anything (TCP included) can go from `a` to `b` right now.
    pub fn path_up(&self, a: u32, b: u32) -> bool {
        self.linked(a, b) && !self.cut.contains(&key(a, b)) && !self.blocked.contains(&(a, b))
    }

    /// Whether UDP can go from `a` to `b` right now.
    pub fn udp_up(&self, a: u32, b: u32) -> bool {
        self.path_up(a, b) && !self.udp_blocked.contains(&key(a, b)) && !self.udp_blocked_one_way.contains(&(a, b))
    }

    /// One-way latency for TCP segments (no jitter: TCP delivers in order).
    pub fn latency(&self, a: u32, b: u32) -> Duration {
        self.class(a, b).latency.0
    }

    /// Decides what happens to a datagram of `len` bytes sent from `a` to `b` at `now`.
    pub fn udp(&mut self, now: Instant, a: u32, b: u32, len: usize) -> Fate {
        // One lookup for the link and its class (as `linked` and `class`); the fault sets
        // are looked into only when they hold something. Every datagram passes here.
        let k = key(a, b);
        let link = self.links.get(&k).copied();
        if a == b || (link.is_none() && !self.full_mesh) {
            return Fate::Drop(NetDrop::NoLink);
        }
        if !self.cut.is_empty() && self.cut.contains(&k) {
            return Fate::Drop(NetDrop::Cut);
        }
        if !self.blocked.is_empty() && self.blocked.contains(&(a, b)) {
            return Fate::Drop(NetDrop::Partition);
        }
        if !self.udp_blocked.is_empty() && self.udp_blocked.contains(&k) {
            return Fate::Drop(NetDrop::UdpBlocked);
        }
        if !self.udp_blocked_one_way.is_empty() && self.udp_blocked_one_way.contains(&(a, b)) {
            return Fate::Drop(NetDrop::UdpBlocked);
        }
        let c = &self.classes[usize::from(link.unwrap_or(self.default_class))];
        if len > self.mtu_of(k, c) {
            return Fate::Drop(NetDrop::Mtu);
        }
        let plain = c.loss == 0.0
            && c.burst_enter == 0.0
            && c.jitter.0.is_zero()
            && c.duplicate == 0.0
            && c.reorder == 0.0
            && c.bandwidth_mbps == 0.0;
        if plain {
            return Fate::Deliver { at: now + c.latency.0, dup: None };
        }
        let seed = self.seed;
        let d = self.dirs.entry((a, b)).or_insert_with(|| Direction {
            busy_until: Instant::ZERO,
            in_burst: false,
            rng: stream(seed, "link", (u64::from(a) << 32) | u64::from(b)),
        });
        if d.in_burst {
            if chance(&mut d.rng, c.burst_exit) {
                d.in_burst = false;
            }
        } else if chance(&mut d.rng, c.burst_enter) {
            d.in_burst = true;
        }
        let lost = if d.in_burst { chance(&mut d.rng, c.burst_loss) } else { chance(&mut d.rng, c.loss) };
        if lost {
            return Fate::Drop(NetDrop::Loss);
        }
        let mut depart = now;
        if c.bandwidth_mbps > 0.0 {
            depart = now.max(d.busy_until);
            if depart - now > c.queue.0 {
                return Fate::Drop(NetDrop::Queue);
            }
            let tx = Duration::from_secs_f64(len as f64 * 8.0 / (c.bandwidth_mbps * 1e6));
            d.busy_until = depart + tx;
            depart = d.busy_until;
        }
        let jitter_us = c.jitter.0.as_micros() as u64;
        let mut at = depart
            + c.latency.0
            + Duration::from_micros(if jitter_us > 0 { below(&mut d.rng, jitter_us + 1) } else { 0 });
        if chance(&mut d.rng, c.reorder) {
            at += c.reorder_delay.0;
        }
        let dup = chance(&mut d.rng, c.duplicate).then(|| at + Duration::from_micros(1 + below(&mut d.rng, 1000)));
        Fate::Deliver { at, dup }
    }

    /// Blocks everything between different groups (hosts in no group form one more group).
    pub fn partition(&mut self, groups: &[Vec<u32>]) {
        let mut group_of = vec![usize::MAX; self.n as usize];
        for (g, hosts) in groups.iter().enumerate() {
            for &h in hosts {
                group_of[h as usize] = g;
            }
        }
        for a in 0..self.n {
            for b in self.neighbours(a) {
                if group_of[a as usize] != group_of[b as usize] {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Blocks traffic from each of `from` to each of `to`.
    pub fn one_way(&mut self, from: &[u32], to: &[u32]) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Ends all partitions.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Cuts or repairs a link.
    pub fn set_cut(&mut self, a: u32, b: u32, cut: bool) {
        if cut {
            self.cut.insert(key(a, b));
        } else {
            self.cut.remove(&key(a, b));
        }
    }

    /// Sets the largest datagram a link carries.
    pub fn set_mtu(&mut self, a: u32, b: u32, mtu: usize) {
        self.mtu.insert(key(a, b), mtu);
    }

    /// For a datagram from `a` to `b` dropped for its size: the IP MTU the sender's kernel
    /// learns (from an ICMP error), unless the link is a black hole.
    pub fn mtu_report(&self, a: u32, b: u32) -> Option<usize> {
        let k = key(a, b);
        let c = &self.classes[usize::from(self.links.get(&k).copied().unwrap_or(self.default_class))];
        c.icmp.then(|| self.mtu_of(k, c) + 28)
    }

    /// The largest datagram link `k` (of class `c`) carries now.
    fn mtu_of(&self, k: (u32, u32), c: &LinkClass) -> usize {
        if self.mtu.is_empty() {
            c.mtu
        } else {
            self.mtu.get(&k).copied().unwrap_or(c.mtu)
        }
    }

    /// Blocks or unblocks UDP between two hosts (unblocking ends one-way blocks too).
    pub fn set_udp_blocked(&mut self, a: u32, b: u32, blocked: bool) {
        if blocked {
            self.udp_blocked.insert(key(a, b));
        } else {
            self.udp_blocked.remove(&key(a, b));
            self.udp_blocked_one_way.remove(&(a, b));
            self.udp_blocked_one_way.remove(&(b, a));
        }
    }

    /// Blocks UDP from `from` to `to` only.
    pub fn block_udp_one_way(&mut self, from: u32, to: u32) {
        self.udp_blocked_one_way.insert((from, to));
    }

    /// Gives the link between `a` and `b` the class at `class` (an index into the classes);
    /// false when there is no such link.
    pub fn set_class(&mut self, a: u32, b: u32, class: u16) -> bool {
        match self.links.get_mut(&key(a, b)) {
            Some(c) => {
                *c = class;
                true
            }
            None if self.full_mesh && a != b && a.max(b) < self.n => {
                self.links.insert(key(a, b), class);
                true
            }
            None => false,
        }
    }

    /// The index of the link class called `name`.
    pub fn class_index(&self, name: &str) -> Option<u16> {
        self.class_names.iter().position(|n| n == name).map(|i| i as u16)
    }

    /// Whether any fault (partition, cut, UDP block) is in force.
    pub fn faulty(&self) -> bool {
        !self.blocked.is_empty()
            || !self.cut.is_empty()
            || !self.udp_blocked.is_empty()
            || !self.udp_blocked_one_way.is_empty()
    }
}
