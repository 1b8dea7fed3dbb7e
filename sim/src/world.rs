//! The engine: one single-threaded discrete-event loop in virtual time.
//!
//! Events are ordered by (time, sequence number); the loop jumps to the next one and never
//! sleeps or reads the wall clock. Hosts are real `router_core::Router`s with a virtual bridge
//! and virtual containers; the network is [`Underlay`]; TCP control connections are ordered,
//! reliable byte streams that stall while their path is down.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand_chacha::ChaCha8Rng;
use router_core::topology::EntryPool;
use router_core::wire::datagram::{Datagram, Kind};
use router_core::{
    Config, ConnEvent, ConnId, Destination, Duration, Event, Instant, Mac, Password, PeerName, Router, TRANSMIT_BUF_MIN,
};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::check::Checker;
use crate::lan::{Bridge, Container, Frames, Ids, Out, Port};
use crate::net::{Fate, NetDrop, Underlay};
use crate::queue::WheelQueue;
use crate::rng::{below, derive, stream};
use crate::scenario::{ConnectPlan, Fault, FaultAction, Scenario, Subnet};
use crate::stats::SimStats;
use crate::trace::{hash_bytes, Trace};

/// The control and data port of every router.
pub const PORT: u16 = 6783;
/// How long a dial to a silent host waits before failing.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Host `i`'s underlay address.
pub fn host_ip(i: u32) -> Ipv4Addr {
    let n = i + 1;
    Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// Host `i`'s router's address: where it listens and sends its datagrams from.
fn router_addr(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(host_ip(i)), PORT)
}

fn host_of(a: SocketAddr) -> Option<u32> {
    match a.ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let n = (u32::from(o[1]) << 16) | (u32::from(o[2]) << 8) | u32::from(o[3]);
            (o[0] == 10 && n > 0).then(|| n - 1)
        }
        IpAddr::V6(_) => None,
    }
}

/// Host `i`'s peer name.
pub fn peer_name(i: u32) -> PeerName {
    PeerName::from_u64(0x0200_0000_0000 | u64::from(i + 1))
}

/// A container's traffic timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Ping a random same-subnet container.
    Ping,
    /// Send a UDP datagram to one.
    Udp,
    /// Broadcast on the subnet.
    Broadcast,
    /// Try to reach another subnet.
    Cross,
}

#[derive(Debug)]
pub(crate) enum Ev {
    Start(u32),
    Timer { host: u32, gen: u32 },
    Udp { to: u32, from: u32, bytes: Vec<u8>, dup: bool },
    Syn { tcp: u32 },
    SynAck { tcp: u32 },
    DialFail { host: u32, inc: u32, conn: ConnId },
    Seg { tcp: u32, dir: u8 },
    Fault(u32),
    Work { container: u32, kind: Work },
    Liveness,
    Prune,
}

/// One simulated host. Laid out in declaration order (`repr(C)`): what every event for the
/// host reads besides its router (paused, timer, bridge, containers) lies in its first 96
/// bytes, and the router's own hot fields follow (see `Router`). Aligned to a cache line, so
/// that every host's hot bytes fill the same few whole lines.
#[repr(C, align(64))]
pub struct Host {
    /// Frozen: inputs wait in `held`.
    pub paused: bool,
    /// Bumped on every (re)start.
    pub incarnation: u32,
    timer_gen: u32,
    timer_at: Option<Instant>,
    bridge: Bridge,
    /// Containers attached here (global indices): kept in the host's line, not behind a
    /// pointer, for the usual one or two (every datagram for the host reads them).
    pub containers: SmallVec<[u32; 2]>,
    /// The router, while the host runs.
    pub router: Option<Router>,
    /// Its name in the scenario.
    pub name: String,
    held: Vec<Ev>,
    /// Hosts its router is told to connect to.
    pub targets: Vec<u32>,
}

impl Host {
    /// Whether the router runs and is not paused.
    pub fn running(&self) -> bool {
        self.router.is_some() && !self.paused
    }
}

/// One TCP connection: end 0 dialled, end 1 accepted. Queue `d` carries bytes from end `d`
/// to the other; `None` is a FIN.
pub(crate) struct Tcp {
    ends: [(u32, u32, Option<ConnId>); 2],
    /// Per direction, what is on its way and when it arrives (`None`: the close), in order.
    queues: [std::collections::VecDeque<(Instant, Option<Vec<u8>>)>; 2],
    scheduled: [bool; 2],
    /// The latest arrival scheduled per direction: nothing overtakes it.
    last_at: [Instant; 2],
    open: [bool; 2],
}

/// Asks the CPU to bring the cache line at `p` in, without waiting for it.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address, and changes no
    // state the program can see.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
}

/// Cache lines at the start of a [`Host`] that a datagram's delivery reads: the host's own
/// fields, then its router's hot fields ([`Router::HOT_LEN`]).
const HOST_HOT_LINES: usize = (core::mem::offset_of!(Host, router) + Router::HOT_LEN).div_ceil(64);

/// The simulated world.
pub struct World {
    /// The scenario being run.
    pub scenario: Scenario,
    /// The seed in force.
    pub seed: u64,
    /// Virtual time.
    pub now: Instant,
    queue: WheelQueue<Ev>,
    /// Hosts, in scenario order.
    pub hosts: Vec<Host>,
    /// Containers.
    pub containers: Vec<Container>,
    /// Containers by subnet (ascending), and each container's place in that list.
    subnet_members: Vec<Vec<u32>>,
    subnet_of: Vec<(u32, u32)>,
    /// The underlay.
    pub net: Underlay,
    tcps: Vec<Option<Tcp>>,
    free_tcps: Vec<u32>,
    tcp_of: FxHashMap<(u32, u32, ConnId), (u32, u8)>,
    stalled: BTreeSet<u32>,
    pub(crate) ids: Ids,
    work_rng: ChaCha8Rng,
    faults: Vec<Fault>,
    /// Counters of the simulation itself.
    pub stats: SimStats,
    /// The safety and liveness checkers.
    pub checker: Checker,
    /// The trace.
    pub trace: Trace,
    buf: Vec<u8>,
    out_frames: Vec<Vec<u8>>,
    /// Recycled datagram buffers: no allocation per datagram once warm.
    pool: Vec<Vec<u8>>,
    /// The queue sequence number of the event whose tables the last step prefetched.
    prefetched: u64,
    /// Recycled lists of frames a router injected, one per drain in progress.
    inject_lists: Vec<Frames>,
    /// Output buffers lent to the router that handles an input and taken back by the drain
    /// that follows, so that every router writes its output into memory the cache still
    /// holds ([`Router::swap_output_buffers`]).
    spare_out: router_core::OutputBuffers,
    /// The plaintext form of the datagram being sent (password sessions).
    plain: Vec<u8>,
    /// One copy of each peer entry for every router of this world.
    entries: EntryPool,
}

impl World {
    /// Builds the world for a scenario and seed; nothing has run yet.
    pub fn new(scenario: Scenario, seed: u64, trace: Trace) -> World {
        let names = scenario.host_names();
        let n = names.len() as u32;
        let net = Underlay::build(&scenario, seed);
        let mut start_rng = stream(seed, "start", 0);
        let mut faults = scenario.faults.clone();
        if let Some(r) = &scenario.random_faults {
            faults.extend(crate::explore::random_schedule(&scenario, r, &mut stream(seed, "faults", 0)));
        }
        faults.sort_by_key(|f| f.at);
        let mut w = World {
            checker: Checker::new(&scenario),
            seed,
            now: Instant::ZERO,
            queue: WheelQueue::default(),
            hosts: Vec::with_capacity(n as usize),
            containers: Vec::new(),
            subnet_members: Vec::new(),
            subnet_of: Vec::new(),
            net,
            tcps: Vec::new(),
            free_tcps: Vec::new(),
            tcp_of: FxHashMap::default(),
            stalled: BTreeSet::new(),
            ids: Ids::default(),
            work_rng: stream(seed, "workload", 0),
            faults,
            stats: SimStats::default(),
            trace,
            buf: vec![0; TRANSMIT_BUF_MIN],
            out_frames: Vec::new(),
            pool: Vec::new(),
            prefetched: 0,
            inject_lists: Vec::new(),
            spare_out: Default::default(),
            plain: Vec::new(),
            entries: EntryPool::shared(),
            scenario,
        };
        let targets = w.connect_plan();
        for (i, name) in names.into_iter().enumerate() {
            w.hosts.push(Host {
                name,
                router: None,
                paused: false,
                held: Vec::new(),
                incarnation: 0,
                bridge: Bridge::default(),
                containers: SmallVec::new(),
                timer_gen: 0,
                timer_at: None,
                targets: targets[i].clone(),
            });
        }
        w.make_containers();
        let spread = w.scenario.hosts.start_spread.0.as_micros() as u64;
        for i in 0..n {
            let at = if spread > 0 { below(&mut start_rng, spread + 1) } else { 0 };
            w.push(Instant::from_micros(at), Ev::Start(i));
        }
        for i in 0..w.faults.len() {
            let at = Instant::ZERO + w.faults[i].at.0;
            w.push(at, Ev::Fault(i as u32));
        }
        w.push(Instant::ZERO + w.scenario.faults_end(), Ev::Liveness);
        w.push(Instant::from_millis(5000), Ev::Prune);
        w
    }

    fn connect_plan(&self) -> Vec<Vec<u32>> {
        let s = &self.scenario;
        let names = s.host_names();
        let n = names.len() as u32;
        let mut t = vec![Vec::new(); n as usize];
        match s.router.connect {
            ConnectPlan::Underlay => {
                for a in 0..n {
                    t[a as usize] = self.net.neighbours(a).into_iter().filter(|&b| b > a).collect();
                }
            }
            ConnectPlan::First => (1..n).for_each(|a| t[a as usize] = vec![0]),
            ConnectPlan::Chain => (1..n).for_each(|a| t[a as usize] = vec![a - 1]),
            ConnectPlan::Explicit => {
                let idx = |h: &str| names.iter().position(|x| x == h).expect("validated") as u32;
                for (h, peers) in &s.router.peers {
                    t[idx(h) as usize] = peers.iter().map(|p| idx(p)).collect();
                }
            }
            ConnectPlan::None => {}
        }
        t
    }

    fn make_containers(&mut self) {
        let subnets: Vec<Subnet> =
            self.scenario.workload.subnets.iter().map(|s| Subnet::parse(s).expect("validated")).collect();
        let mut used = vec![0u32; subnets.len()];
        let per = self.scenario.workload.containers_per_host;
        for h in 0..self.hosts.len() {
            for k in 0..per {
                let idx = self.containers.len();
                let si = idx % subnets.len();
                used[si] += 1;
                let sn = subnets[si];
                let mac = Mac([0x02, 0xc0, (idx >> 24) as u8, (idx >> 16) as u8, (idx >> 8) as u8, idx as u8]);
                let name = format!("{}/c{k}", self.hosts[h].name);
                self.containers.push(Container::new(name, mac, sn.host(used[si]), sn, h));
                self.hosts[h].containers.push(idx as u32);
                // Equal subnets listed twice are one subnet.
                let g = subnets.iter().position(|&o| o == sn).expect("listed");
                if self.subnet_members.len() <= g {
                    self.subnet_members.resize(g + 1, Vec::new());
                }
                self.subnet_of.push((g as u32, self.subnet_members[g].len() as u32));
                self.subnet_members[g].push(idx as u32);
                if self.active(idx) {
                    self.schedule_work(idx as u32);
                }
            }
        }
    }

    /// Whether container `i` runs the periodic workload: a fraction `active` of them, spread
    /// evenly over the containers.
    fn active(&self, i: usize) -> bool {
        let a = self.scenario.workload.active;
        a >= 1.0 || ((i + 1) as f64 * a).floor() > (i as f64 * a).floor()
    }

    fn schedule_work(&mut self, c: u32) {
        let w = &self.scenario.workload;
        let start = w.start.0;
        for (iv, kind) in [
            (w.ping_interval, Work::Ping),
            (w.udp_interval, Work::Udp),
            (w.broadcast_interval, Work::Broadcast),
            (w.cross_subnet_interval, Work::Cross),
        ] {
            let us = iv.0.as_micros() as u64;
            if us > 0 {
                let phase = below(&mut self.work_rng, us) + 1;
                self.push(Instant::ZERO + start + Duration::from_micros(phase), Ev::Work { container: c, kind });
            }
        }
    }

    pub(crate) fn push(&mut self, at: Instant, ev: Ev) {
        self.queue.push(at.max(self.now), ev);
    }

    /// The time of the next event.
    pub fn next_time(&mut self) -> Option<Instant> {
        self.queue.peek_time()
    }

    /// Runs one event. Returns false when none is left.
    pub fn step(&mut self) -> bool {
        let Some(e) = self.queue.pop() else { return false };
        debug_assert!(e.at >= self.now, "time never goes back");
        let ev = e.item;
        self.now = e.at;
        if let Ev::Timer { host, gen } = ev {
            if gen != self.hosts[host as usize].timer_gen {
                self.stats.kinds.superseded += 1;
                return true;
            }
        }
        self.stats.events += 1;
        let k = &mut self.stats.kinds;
        *match ev {
            Ev::Timer { .. } => &mut k.timers,
            Ev::Udp { .. } => &mut k.udp,
            Ev::Syn { .. } | Ev::SynAck { .. } | Ev::DialFail { .. } | Ev::Seg { .. } => &mut k.tcp,
            Ev::Work { .. } => &mut k.work,
            Ev::Start(_) | Ev::Fault(_) | Ev::Liveness | Ev::Prune => &mut k.other,
        } += 1;
        // A software pipeline over the next events, so that their misses overlap this
        // event's handling instead of starting when it is their turn: the host of the event
        // after next, and the tables of the next one (read through that host, whose lines
        // the previous step asked for).
        if let Some(n) = self.queue.peek_ready(1) {
            self.prefetch_host(&n.item);
        }
        if e.seq != self.prefetched {
            self.prefetch_for(&ev);
        }
        if let Some(n) = self.queue.peek_ready(0) {
            self.prefetch_for(&n.item);
            self.prefetched = n.seq;
        }
        self.dispatch(ev);
        true
    }

    /// Prefetches the memory a datagram's delivery will first read: the receiving router's
    /// tables for its sender and source (see [`Router::datagram_lines`]), the bridge's entry
    /// for the first frame's source MAC and, for an ARP frame, each container's neighbour
    /// entry for the sender. In a large network each of these is a cache miss; asked for
    /// together, and an event ahead, they overlap instead of coming one after another as the
    /// handling reaches each. (The same for a wake-up, the top of the router's deadlines,
    /// showed no gain: wake-ups are a tenth of the events.)
    fn prefetch_for(&self, ev: &Ev) {
        let Ev::Udp { to, from, bytes, .. } = ev else { return };
        let h = &self.hosts[*to as usize];
        let Some(r) = &h.router else { return };
        let Some(f) = r.datagram_lines(router_addr(*from), bytes, prefetch) else { return };
        prefetch(h.bridge.learn_line(f));
        for &c in &h.containers {
            if let Some(p) = self.containers[c as usize].arp_line(f) {
                prefetch(p);
            }
        }
    }

    /// Prefetches the first lines of the host a datagram is for (its own hot fields and its
    /// router's, which [`World::prefetch_for`] reads) and the datagram's first bytes.
    fn prefetch_host(&self, ev: &Ev) {
        let Ev::Udp { to, bytes, .. } = ev else { return };
        let Some(h) = self.hosts.get(*to as usize) else { return };
        let base = (h as *const Host).cast::<u8>();
        for line in 0..HOST_HOT_LINES {
            prefetch(base.wrapping_add(line * 64));
        }
        prefetch(bytes.as_ptr());
    }

    /// Runs until `until` (inclusive) or until the checkers stop the run.
    pub fn run_until(&mut self, until: Instant) {
        while self.next_time().is_some_and(|t| t <= until) && !self.checker.stopped() {
            self.step();
        }
        if !self.checker.stopped() {
            self.now = self.now.max(until);
        }
    }

    fn host_of_ev(&self, ev: &Ev) -> Option<u32> {
        match ev {
            Ev::Udp { to, .. } => Some(*to),
            Ev::Syn { tcp } => self.tcp(*tcp).map(|t| t.ends[1].0),
            Ev::SynAck { tcp } => self.tcp(*tcp).map(|t| t.ends[0].0),
            Ev::DialFail { host, .. } => Some(*host),
            Ev::Seg { tcp, dir } => self.tcp(*tcp).map(|t| t.ends[1 - *dir as usize].0),
            _ => None,
        }
    }

    fn tcp(&self, id: u32) -> Option<&Tcp> {
        self.tcps.get(id as usize).and_then(Option::as_ref)
    }

    fn dispatch(&mut self, ev: Ev) {
        if let Some(h) = self.host_of_ev(&ev) {
            if self.hosts[h as usize].paused {
                self.hosts[h as usize].held.push(ev);
                return;
            }
        }
        match ev {
            Ev::Start(h) => self.start_host(h),
            Ev::Timer { host, gen } => self.on_timer(host, gen),
            Ev::Udp { to, from, bytes, dup } => {
                self.on_udp(to, from, &bytes, dup);
                if self.pool.len() < 4096 {
                    self.pool.push(bytes);
                }
            }
            Ev::Syn { tcp } => self.on_syn(tcp),
            Ev::SynAck { tcp } => self.on_synack(tcp),
            Ev::DialFail { host, inc, conn } => self.on_dial_fail(host, inc, conn),
            Ev::Seg { tcp, dir } => self.on_seg(tcp, dir),
            Ev::Fault(i) => self.on_fault(i),
            Ev::Work { container, kind } => self.on_work(container, kind),
            Ev::Liveness => self.on_liveness(),
            Ev::Prune => {
                self.checker.prune(self.now);
                let next = self.now + Duration::from_secs(5);
                self.push(next, Ev::Prune);
            }
        }
    }

    // ---- hosts ----

    /// The password host `h`'s router is given, if any (peers link only when theirs match).
    pub(crate) fn password_of(&self, h: u32) -> Option<&str> {
        let s = &self.scenario.router;
        let name = &self.hosts[h as usize].name;
        s.passwords.get(name).or(s.password.as_ref()).map(String::as_str).filter(|p| !p.is_empty())
    }

    fn router_config(&self, h: u32) -> Config {
        let s = &self.scenario.router;
        let mut c = Config::new(peer_name(h));
        c.nickname = self.hosts[h as usize].name.clone();
        c.entry_pool = self.entries.clone();
        // Thousands of routers share this process: keep little idle output room each.
        c.outbox_keep = 4 << 10;
        c.seed = derive(self.seed, "router", (u64::from(h) << 32) | u64::from(self.hosts[h as usize].incarnation));
        c.discovery = s.discovery;
        c.lazy_routes = s.lazy_routes;
        if let Some(v) = s.hop_limit {
            c.hop_limit = v;
        }
        if let Some(v) = s.conn_limit {
            c.conn_limit = v;
        }
        if let Some(v) = s.udp_heartbeat {
            c.udp_heartbeat = v.0;
        }
        if let Some(v) = s.udp_timeout {
            c.udp_timeout = v.0;
        }
        if let Some(v) = s.tcp_heartbeat {
            c.tcp_heartbeat = v.0;
        }
        if let Some(v) = s.tcp_timeout {
            c.tcp_timeout = v.0;
        }
        if let Some(v) = s.anti_entropy {
            c.anti_entropy = v.0;
        }
        if let Some(v) = s.gossip_coalesce {
            c.gossip_coalesce = v.0;
        }
        if let Some(v) = s.backoff_min {
            c.backoff_min = v.0;
        }
        if let Some(v) = s.backoff_max {
            c.backoff_max = v.0;
        }
        if let Some(v) = s.mac_expiry {
            c.mac_expiry = v.0;
        }
        c.password = self.password_of(h).map(|p| Password::new(p.as_bytes()).expect("non-empty"));
        c
    }

    fn start_host(&mut self, h: u32) {
        if self.hosts[h as usize].router.is_some() {
            return;
        }
        self.hosts[h as usize].incarnation += 1;
        let cfg = self.router_config(h);
        let now = self.now;
        let mut r = Router::new(now, cfg);
        for &t in &self.hosts[h as usize].targets {
            r.connect(now, router_addr(t)).expect("valid address");
        }
        self.hosts[h as usize].router = Some(r);
        let inc = self.hosts[h as usize].incarnation;
        self.trace.record(now.as_micros(), 1, h, u64::from(inc), || {
            format!("{{\"t\":{},\"ev\":\"start\",\"host\":{h},\"incarnation\":{inc}}}", now.as_micros())
        });
        // Containers announce themselves, as `weave attach` does.
        for c in self.hosts[h as usize].containers.clone() {
            let f = self.containers[c as usize].gratuitous_arp(&mut self.ids);
            self.container_sent(c, f);
        }
        self.drain(h);
    }

    fn crash_host(&mut self, h: u32) {
        let host = &mut self.hosts[h as usize];
        host.router = None;
        host.paused = false;
        host.held.clear();
        host.timer_at = None;
        host.timer_gen += 1;
        // Every connection of the old incarnation is dead at this end; the other end learns
        // it by timeout, or by a reset once the host is back (see `restart_host`).
        let inc = host.incarnation;
        for id in 0..self.tcps.len() as u32 {
            let Some(t) = self.tcps[id as usize].as_mut() else { continue };
            for d in 0..2 {
                if t.ends[d].0 == h && t.ends[d].1 == inc {
                    t.open[d] = false;
                }
            }
        }
    }

    fn restart_host(&mut self, h: u32) {
        if self.hosts[h as usize].router.is_some() {
            self.crash_host(h);
        }
        let inc = self.hosts[h as usize].incarnation;
        // The peers' connections to the old incarnation are reset.
        let mut resets = Vec::new();
        for id in 0..self.tcps.len() as u32 {
            let Some(t) = self.tcps[id as usize].as_mut() else { continue };
            for d in 0..2 {
                if t.ends[d].0 == h && t.ends[d].1 == inc && t.open[1 - d] {
                    t.queues[d].clear();
                    resets.push((id, d as u8));
                }
            }
        }
        for (id, d) in resets {
            self.queue_seg(id, d, None);
        }
        self.start_host(h);
    }

    fn arm_timer(&mut self, h: u32) {
        let host = &mut self.hosts[h as usize];
        let Some(r) = &host.router else { return };
        let next = r.poll_timeout();
        if next != host.timer_at {
            host.timer_at = next;
            host.timer_gen += 1;
            let gen = host.timer_gen;
            if let Some(at) = next {
                self.push(at, Ev::Timer { host: h, gen });
            }
        }
    }

    fn on_timer(&mut self, h: u32, gen: u32) {
        let host = &mut self.hosts[h as usize];
        debug_assert_eq!(gen, host.timer_gen, "superseded wake-ups are discarded in step");
        if host.paused {
            return;
        }
        host.timer_at = None;
        let now = self.now;
        let Some(r) = host.router.as_mut() else { return };
        r.swap_output_buffers(&mut self.spare_out);
        r.handle_timeout(now);
        self.trace.record(now.as_micros(), 2, h, 0, || {
            format!("{{\"t\":{},\"ev\":\"timer\",\"host\":{h}}}", now.as_micros())
        });
        self.drain(h);
    }

    /// Carries out everything host `h`'s router wants done.
    fn drain(&mut self, h: u32) {
        // Frames for the bridge are handled after the drain: containers answer them at once,
        // and their answers re-enter this router.
        let mut buf = std::mem::take(&mut self.buf);
        let mut plain = std::mem::take(&mut self.plain);
        // Drains nest (a container's answer re-enters its router): each takes its own list.
        let mut injects = self.inject_lists.pop().unwrap_or_default();
        // Sealed datagrams are checked in their plaintext form.
        let poll = |r: &mut Router, buf: &mut Vec<u8>, plain: &mut Vec<u8>| {
            if r.config().password.is_some() {
                r.poll_transmit_with_plaintext(buf, plain)
            } else {
                r.poll_transmit(buf)
            }
        };
        while let Some(t) = self.hosts[h as usize].router.as_mut().and_then(|r| poll(r, &mut buf, &mut plain)) {
            let bytes = &buf[..t.len];
            match t.dest {
                Destination::Bridge => injects.push(bytes),
                Destination::Udp(to) => {
                    let inside = if plain.is_empty() { bytes } else { &plain[..] };
                    self.send_udp(h, to, bytes, inside)
                }
                Destination::Conn(conn) => self.send_stream(h, conn, bytes),
            }
            plain.clear();
        }
        self.buf = buf;
        self.plain = plain;
        // Takes back the buffers lent for the input (empty buffers are interchangeable, so
        // after an input that borrowed none this only trades one router's for another's).
        if let Some(r) = self.hosts[h as usize].router.as_mut() {
            r.swap_output_buffers(&mut self.spare_out);
        }
        while let Some(e) = self.hosts[h as usize].router.as_mut().and_then(Router::poll_event) {
            match e {
                Event::Dial { conn, addr } => self.dial(h, conn, addr),
                Event::Close { conn } => self.close_stream(h, conn),
                _ => {}
            }
        }
        self.arm_timer(h);
        for f in injects.iter() {
            self.router_injected(h, f);
        }
        injects.clear();
        self.inject_lists.push(injects);
    }

    // ---- UDP ----

    /// Sends `bytes` (`inside`: their plaintext form, the same unless sealed).
    fn send_udp(&mut self, h: u32, to: SocketAddr, bytes: &[u8], inside: &[u8]) {
        self.checker.on_send(self.now, h, inside);
        let Some(dst) = host_of(to).filter(|&d| d < self.net.len()) else {
            return self.stats.net_drop(NetDrop::NoLink, bytes);
        };
        match self.net.udp(self.now, h, dst, bytes.len()) {
            Fate::Drop(why) => self.stats.net_drop(why, bytes),
            Fate::Deliver { at, dup } => {
                let copy = self.copy(bytes);
                self.push(at, Ev::Udp { to: dst, from: h, bytes: copy, dup: false });
                if let Some(at2) = dup {
                    self.stats.duplicated += 1;
                    self.checker.on_duplicate(self.now, inside);
                    let copy = self.copy(bytes);
                    self.push(at2, Ev::Udp { to: dst, from: h, bytes: copy, dup: true });
                }
            }
        }
    }

    fn copy(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        v
    }

    fn on_udp(&mut self, to: u32, from: u32, bytes: &[u8], dup: bool) {
        let now = self.now;
        self.trace.record(now.as_micros(), 3, to, hash_bytes(bytes), || {
            format!(
                "{{\"t\":{},\"ev\":\"udp\",\"from\":{from},\"to\":{to},\"len\":{},\"dup\":{dup}}}",
                now.as_micros(),
                bytes.len()
            )
        });
        let Some(r) = self.hosts[to as usize].router.as_mut() else {
            return self.stats.net_drop(NetDrop::HostDown, bytes);
        };
        let from = router_addr(from);
        r.swap_output_buffers(&mut self.spare_out);
        if !self.checker.safety() {
            r.handle_datagram(now, from, bytes);
            return self.drain(to);
        }
        let before = *r.stats();
        let count = |b: &[u8]| match Datagram::new_checked(b) {
            Ok(d) if d.kind() == Kind::Frames => d.frames().map(|f| f.count()).unwrap_or(0),
            _ => 0,
        };
        r.handle_datagram(now, from, bytes);
        // A sealed datagram is checked in the plaintext form the router opened; one that
        // failed to open is a single counted drop.
        let sealed = r.config().password.is_some();
        let inside = if sealed { r.last_opened() } else { bytes };
        let frames = count(inside);
        let after = *r.stats();
        if after.frames_injected + after.frames_relayed > before.frames_injected + before.frames_relayed {
            self.checker.on_pass(now, to, inside);
        }
        self.checker.on_datagram_accounting(now, to, frames as u64, &before, &after);
        self.drain(to);
    }

    // ---- TCP ----

    fn alloc_tcp(&mut self, t: Tcp) -> u32 {
        match self.free_tcps.pop() {
            Some(id) => {
                self.tcps[id as usize] = Some(t);
                id
            }
            None => {
                self.tcps.push(Some(t));
                (self.tcps.len() - 1) as u32
            }
        }
    }

    fn dial(&mut self, h: u32, conn: ConnId, addr: SocketAddr) {
        let inc = self.hosts[h as usize].incarnation;
        let now = self.now;
        let Some(dst) = host_of(addr).filter(|&d| d < self.net.len() && addr.port() == PORT) else {
            return self.push(now + CONNECT_TIMEOUT, Ev::DialFail { host: h, inc, conn });
        };
        let t = Tcp {
            ends: [(h, inc, Some(conn)), (dst, 0, None)],
            queues: Default::default(),
            scheduled: [false; 2],
            last_at: [now; 2],
            open: [true, false],
        };
        let id = self.alloc_tcp(t);
        self.tcp_of.insert((h, inc, conn), (id, 0));
        if self.net.path_up(h, dst) && self.net.path_up(dst, h) {
            let at = now + self.net.latency(h, dst);
            self.push(at, Ev::Syn { tcp: id });
        } else {
            self.push(now + CONNECT_TIMEOUT, Ev::DialFail { host: h, inc, conn });
            self.free_tcp(id);
        }
    }

    fn free_tcp(&mut self, id: u32) {
        if let Some(t) = self.tcps[id as usize].take() {
            for (h, inc, c) in t.ends {
                if let Some(c) = c {
                    self.tcp_of.remove(&(h, inc, c));
                }
            }
            self.free_tcps.push(id);
            self.stalled.remove(&id);
        }
    }

    fn on_dial_fail(&mut self, h: u32, inc: u32, conn: ConnId) {
        let now = self.now;
        let host = &mut self.hosts[h as usize];
        if host.incarnation != inc {
            return;
        }
        let Some(r) = host.router.as_mut() else { return };
        r.handle_conn_event(now, conn, ConnEvent::Closed);
        self.trace.record(now.as_micros(), 4, h, u64::from(conn.0), || {
            format!("{{\"t\":{},\"ev\":\"dial-failed\",\"host\":{h}}}", now.as_micros())
        });
        self.drain(h);
    }

    fn on_syn(&mut self, id: u32) {
        let now = self.now;
        let Some(t) = self.tcps[id as usize].as_ref() else { return };
        let (a, a_inc, a_conn) = t.ends[0];
        let b = t.ends[1].0;
        let a_conn = a_conn.expect("dialler has a conn");
        let path = self.net.path_up(b, a);
        let host = &mut self.hosts[b as usize];
        let Some(r) = host.router.as_mut() else {
            // Nobody listening: the SYN goes unanswered (crashed) and the dial times out.
            self.free_tcp(id);
            return self.push(now + CONNECT_TIMEOUT, Ev::DialFail { host: a, inc: a_inc, conn: a_conn });
        };
        let remote = SocketAddr::new(IpAddr::V4(host_ip(a)), 30_000 + (id % 30_000) as u16);
        let conn = r.accept(now, remote);
        let inc = host.incarnation;
        let t = self.tcps[id as usize].as_mut().expect("checked");
        t.ends[1] = (b, inc, Some(conn));
        t.open[1] = true;
        self.tcp_of.insert((b, inc, conn), (id, 1));
        self.trace.record(now.as_micros(), 5, b, u64::from(a), || {
            format!("{{\"t\":{},\"ev\":\"accept\",\"host\":{b},\"from\":{a}}}", now.as_micros())
        });
        if path {
            let at = now + self.net.latency(b, a);
            self.push(at, Ev::SynAck { tcp: id });
        }
        self.drain(b);
    }

    fn on_synack(&mut self, id: u32) {
        let now = self.now;
        let Some(t) = self.tcps[id as usize].as_ref() else { return };
        let (a, inc, conn) = t.ends[0];
        if !t.open[0] || self.hosts[a as usize].incarnation != inc {
            return;
        }
        let Some(r) = self.hosts[a as usize].router.as_mut() else { return };
        r.handle_conn_event(now, conn.expect("dialler"), ConnEvent::Connected);
        self.trace.record(now.as_micros(), 6, a, 0, || {
            format!("{{\"t\":{},\"ev\":\"connected\",\"host\":{a}}}", now.as_micros())
        });
        self.drain(a);
    }

    fn send_stream(&mut self, h: u32, conn: ConnId, bytes: &[u8]) {
        let inc = self.hosts[h as usize].incarnation;
        let Some(&(id, dir)) = self.tcp_of.get(&(h, inc, conn)) else { return };
        self.queue_seg(id, dir, Some(bytes.to_vec()));
    }

    /// Sends on a stream: segments are pipelined, each arriving one latency after it was
    /// sent and never before the one ahead of it.
    fn queue_seg(&mut self, id: u32, dir: u8, seg: Option<Vec<u8>>) {
        let Some(t) = self.tcps[id as usize].as_mut() else { return };
        let (from, to) = (t.ends[dir as usize].0, t.ends[1 - dir as usize].0);
        let due = self.now + self.net.latency(from, to);
        t.queues[dir as usize].push_back((due, seg));
        self.schedule_seg(id, dir);
    }

    fn close_stream(&mut self, h: u32, conn: ConnId) {
        let inc = self.hosts[h as usize].incarnation;
        let Some((id, dir)) = self.tcp_of.remove(&(h, inc, conn)) else { return };
        let t = self.tcps[id as usize].as_mut().expect("mapped");
        t.open[dir as usize] = false;
        t.ends[dir as usize].2 = None;
        if t.open[1 - dir as usize] {
            self.queue_seg(id, dir, None);
        } else {
            self.free_tcp(id);
        }
    }

    fn schedule_seg(&mut self, id: u32, dir: u8) {
        let Some(t) = self.tcps[id as usize].as_mut() else { return };
        let d = dir as usize;
        let Some(&(due, _)) = t.queues[d].front() else { return };
        if t.scheduled[d] {
            return;
        }
        let (from, to) = (t.ends[d].0, t.ends[1 - d].0);
        if !self.net.path_up(from, to) {
            self.stalled.insert(id);
            return;
        }
        let at = due.max(t.last_at[d]).max(self.now);
        t.last_at[d] = at;
        t.scheduled[d] = true;
        self.push(at, Ev::Seg { tcp: id, dir });
    }

    fn on_seg(&mut self, id: u32, dir: u8) {
        let now = self.now;
        let Some(t) = self.tcps[id as usize].as_mut() else { return };
        let d = dir as usize;
        t.scheduled[d] = false;
        let (from, to) = (t.ends[d].0, t.ends[1 - d].0);
        if !self.net.path_up(from, to) {
            self.stalled.insert(id);
            return;
        }
        let (to_host, to_inc, to_conn) = t.ends[1 - d];
        let Some((_, seg)) = t.queues[d].pop_front() else { return };
        let alive = t.open[1 - d] && self.hosts[to_host as usize].incarnation == to_inc;
        let Some(conn) = to_conn.filter(|_| alive) else {
            if seg.is_none() && !t.open[1 - d] {
                self.free_tcp(id);
            } else {
                self.schedule_seg(id, dir);
            }
            return;
        };
        let Some(r) = self.hosts[to_host as usize].router.as_mut() else {
            // Crashed: the bytes are lost with the host.
            return;
        };
        match &seg {
            Some(bytes) => {
                r.swap_output_buffers(&mut self.spare_out);
                r.handle_stream(now, conn, bytes);
                self.trace.record(now.as_micros(), 7, to_host, hash_bytes(bytes), || {
                    format!(
                        "{{\"t\":{},\"ev\":\"tcp\",\"from\":{from},\"to\":{to},\"len\":{}}}",
                        now.as_micros(),
                        bytes.len()
                    )
                });
            }
            None => {
                r.handle_conn_event(now, conn, ConnEvent::Closed);
                self.trace.record(now.as_micros(), 8, to_host, 0, || {
                    format!("{{\"t\":{},\"ev\":\"tcp-close\",\"from\":{from},\"to\":{to}}}", now.as_micros())
                });
                let t = self.tcps[id as usize].as_mut().expect("present");
                t.open[1 - d] = false;
                self.tcp_of.remove(&(to_host, to_inc, conn));
                t.ends[1 - d].2 = None;
                if !t.open[d] {
                    self.free_tcp(id);
                }
            }
        }
        self.schedule_seg(id, dir);
        self.drain(to_host);
    }

    /// Retries stalled connections after a fault was lifted.
    fn unstall(&mut self) {
        let ids: Vec<u32> = std::mem::take(&mut self.stalled).into_iter().collect();
        for id in ids {
            // What waited is sent again now and takes a latency from here.
            if let Some(t) = self.tcps[id as usize].as_mut() {
                for d in 0..2 {
                    let (from, to) = (t.ends[d].0, t.ends[1 - d].0);
                    t.last_at[d] = t.last_at[d].max(self.now + self.net.latency(from, to));
                }
            }
            for dir in 0..2 {
                self.schedule_seg(id, dir);
            }
        }
    }

    // ---- bridge and containers ----

    fn container_sent(&mut self, c: u32, frame: Vec<u8>) {
        let h = self.containers[c as usize].host as u32;
        if !self.hosts[h as usize].running() {
            return;
        }
        match self.hosts[h as usize].bridge.forward(Port::Container(c as usize), &frame) {
            Out::Drop => {}
            Out::One(Port::Router) => self.capture(h, &frame),
            Out::One(Port::Container(o)) => self.deliver_to_container(o as u32, &frame),
            Out::Flood => {
                let unicast = frame[0] & 1 == 0;
                if unicast {
                    self.checker.on_flood(self.now, &frame);
                }
                let mut k = 0;
                while let Some(&o) = self.hosts[h as usize].containers.get(k) {
                    if o != c {
                        self.deliver_to_container(o, &frame);
                    }
                    k += 1;
                }
                self.capture(h, &frame);
            }
        }
    }

    fn capture(&mut self, h: u32, frame: &[u8]) {
        let now = self.now;
        let Some(r) = self.hosts[h as usize].router.as_mut() else { return };
        r.swap_output_buffers(&mut self.spare_out);
        if self.checker.safety() {
            let before = *r.stats();
            r.handle_frame(now, frame);
            let after = *r.stats();
            self.checker.on_capture_accounting(now, h, &before, &after);
        } else {
            r.handle_frame(now, frame);
        }
        self.trace.record(now.as_micros(), 9, h, hash_bytes(frame), || {
            format!("{{\"t\":{},\"ev\":\"capture\",\"host\":{h},\"len\":{}}}", now.as_micros(), frame.len())
        });
        self.drain(h);
    }

    fn router_injected(&mut self, h: u32, frame: &[u8]) {
        match self.hosts[h as usize].bridge.forward(Port::Router, frame) {
            Out::Drop | Out::One(Port::Router) => {}
            Out::One(Port::Container(o)) => self.deliver_to_container(o as u32, frame),
            Out::Flood => {
                let unicast = frame[0] & 1 == 0;
                if unicast {
                    self.checker.on_flood(self.now, frame);
                }
                let mut k = 0;
                while let Some(&o) = self.hosts[h as usize].containers.get(k) {
                    self.deliver_to_container(o, frame);
                    k += 1;
                }
            }
        }
    }

    fn deliver_to_container(&mut self, c: u32, frame: &[u8]) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.out_frames);
        let received = self.containers[c as usize].receive(frame, &mut self.ids, &mut out);
        self.checker.on_container(now, c, &self.containers[c as usize], frame, received);
        for f in out.drain(..) {
            self.container_sent(c, f);
        }
        self.out_frames = out;
    }

    fn on_work(&mut self, c: u32, kind: Work) {
        let w = &self.scenario.workload;
        let interval = match kind {
            Work::Ping => w.ping_interval,
            Work::Udp => w.udp_interval,
            Work::Broadcast => w.broadcast_interval,
            Work::Cross => w.cross_subnet_interval,
        }
        .0;
        let next = self.now + interval;
        self.push(next, Ev::Work { container: c, kind });
        let h = self.containers[c as usize].host;
        if !self.hosts[h].running() {
            return;
        }
        let mut out = Vec::new();
        let now = self.now;
        let target = match kind {
            Work::Broadcast => {
                self.containers[c as usize].broadcast(&mut self.ids, &mut out);
                None
            }
            Work::Cross => {
                let sn = self.containers[c as usize].subnet;
                let others: Vec<u32> =
                    (0..self.containers.len() as u32).filter(|&o| self.containers[o as usize].subnet != sn).collect();
                (!others.is_empty()).then(|| others[below(&mut self.work_rng, others.len() as u64) as usize])
            }
            Work::Ping | Work::Udp => {
                // A random other member of our subnet.
                let (g, at) = self.subnet_of[c as usize];
                let members = &self.subnet_members[g as usize];
                (members.len() > 1).then(|| {
                    let k = below(&mut self.work_rng, members.len() as u64 - 1) as usize;
                    members[if k < at as usize { k } else { k + 1 }]
                })
            }
        };
        if let Some(o) = target {
            let ip = self.containers[o as usize].ip;
            let me = &mut self.containers[c as usize];
            if kind == Work::Udp {
                me.send_udp(ip, &mut self.ids, &mut out);
            } else {
                me.ping(now, ip, &mut self.ids, &mut out);
            }
        }
        for f in out {
            self.container_sent(c, f);
        }
    }

    /// Container `c` pings container `o` for liveness probe `i`.
    pub(crate) fn probe(&mut self, c: u32, o: u32, i: usize) {
        let ip = self.containers[o as usize].ip;
        let now = self.now;
        let mut out = Vec::new();
        let seq = self.containers[c as usize].ping(now, ip, &mut self.ids, &mut out);
        self.checker.register_probe(now, c, seq, i);
        for f in out {
            self.container_sent(c, f);
        }
    }

    // ---- faults ----

    fn idx(&self, name: &str) -> u32 {
        self.hosts.iter().position(|h| h.name == name).expect("validated host name") as u32
    }

    fn on_fault(&mut self, i: u32) {
        let f = self.faults[i as usize].clone();
        let now = self.now;
        self.stats.faults += 1;
        let desc = serde_json::to_string(&f.action).unwrap_or_default();
        self.trace.record(now.as_micros(), 10, 0, u64::from(i), || {
            format!("{{\"t\":{},\"ev\":\"fault\",\"fault\":{desc}}}", now.as_micros())
        });
        match &f.action {
            FaultAction::Partition { groups } => {
                let g: Vec<Vec<u32>> = groups.iter().map(|g| g.iter().map(|h| self.idx(h)).collect()).collect();
                self.net.partition(&g);
            }
            FaultAction::OneWay { from, to } => {
                let from: Vec<u32> = from.iter().map(|h| self.idx(h)).collect();
                let to: Vec<u32> = to.iter().map(|h| self.idx(h)).collect();
                self.net.one_way(&from, &to);
            }
            FaultAction::Heal => {
                self.net.heal();
                self.unstall();
            }
            FaultAction::Cut { a, b } => self.net.set_cut(self.idx(a), self.idx(b), true),
            FaultAction::Repair { a, b } => {
                self.net.set_cut(self.idx(a), self.idx(b), false);
                self.unstall();
            }
            FaultAction::UdpBlock { a, b } => self.net.set_udp_blocked(self.idx(a), self.idx(b), true),
            FaultAction::UdpUnblock { a, b } => self.net.set_udp_blocked(self.idx(a), self.idx(b), false),
            FaultAction::Crash { host } => {
                let h = self.idx(host);
                self.crash_host(h);
            }
            FaultAction::Restart { host } => {
                let h = self.idx(host);
                self.restart_host(h);
                self.unstall();
            }
            FaultAction::Pause { host } => {
                let h = self.idx(host);
                if self.hosts[h as usize].router.is_some() {
                    self.hosts[h as usize].paused = true;
                }
            }
            FaultAction::Resume { host } => {
                let h = self.idx(host);
                let host = &mut self.hosts[h as usize];
                if host.paused {
                    host.paused = false;
                    let held = std::mem::take(&mut host.held);
                    host.timer_at = None;
                    for ev in held {
                        self.push(now, ev);
                    }
                    if let Some(r) = self.hosts[h as usize].router.as_mut() {
                        r.handle_timeout(now);
                    }
                    self.drain(h);
                }
            }
            FaultAction::Move { container, to } => {
                let (hname, k) = container.split_once('/').expect("validated");
                let k: usize = k[1..].parse().expect("validated");
                let c =
                    self.containers.iter().position(|c| c.name == format!("{hname}/c{k}")).expect("validated") as u32;
                let old = self.containers[c as usize].host as u32;
                let to = self.idx(to);
                if old != to {
                    let mac = self.containers[c as usize].mac;
                    self.hosts[old as usize].bridge.forget(mac);
                    self.hosts[old as usize].containers.retain(|x| *x != c);
                    self.hosts[to as usize].containers.push(c);
                    self.containers[c as usize].host = to as usize;
                    self.containers[c as usize].moves += 1;
                    let f = self.containers[c as usize].gratuitous_arp(&mut self.ids);
                    self.container_sent(c, f);
                }
            }
        }
    }

    /// Applies a fault now (benchmarks and interactive use).
    pub fn apply(&mut self, action: FaultAction) {
        let at = crate::scenario::Dur(self.now - Instant::ZERO);
        self.faults.push(Fault { at, action });
        let i = (self.faults.len() - 1) as u32;
        self.push(self.now, Ev::Fault(i));
    }

    fn on_liveness(&mut self) {
        crate::check::liveness_tick(self);
    }

    pub(crate) fn push_liveness(&mut self, at: Instant) {
        self.push(at, Ev::Liveness);
    }
}
