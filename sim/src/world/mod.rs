//! The engine: one single-threaded discrete-event loop in virtual time.
//!
//! Events are ordered by (time, sequence number); the loop jumps to the next one and never
//! sleeps or reads the wall clock. Hosts are real `router_core::Router`s with a virtual bridge
//! and virtual containers; the network is [`Underlay`]. This module owns the world's state,
//! the loop, the drain of a router's outputs and UDP delivery; `hosts` starts and stops
//! routers, `tcp` models control connections, `traffic` the containers and bridges, and
//! `faults` the scenario's fault schedule.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand_chacha::ChaCha8Rng;
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
use crate::share::SharedState;
use crate::stats::SimStats;
use crate::trace::{hash_bytes, Trace};

mod faults;
mod hostile;
mod hosts;
pub(crate) mod ipam;
mod tcp;
mod traffic;

use tcp::Tcp;

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

/// The host whose peer name is `p` (see [`peer_name`]).
pub fn host_of_peer(p: PeerName) -> Option<u32> {
    u32::try_from(p.to_u64().checked_sub(0x0200_0000_0000)?.checked_sub(1)?).ok()
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
    Timer {
        host: u32,
        gen: u32,
    },
    Udp {
        to: u32,
        from: u32,
        bytes: Vec<u8>,
        dup: bool,
    },
    Syn {
        tcp: u32,
    },
    SynAck {
        tcp: u32,
    },
    DialFail {
        host: u32,
        inc: u32,
        conn: ConnId,
    },
    Seg {
        tcp: u32,
        dir: u8,
    },
    Fault(u32),
    Work {
        container: u32,
        kind: Work,
    },
    /// The kernel of host `host` learned that datagrams to `to` above `mtu` bytes do not pass.
    PathMtu {
        host: u32,
        to: u32,
        mtu: usize,
    },
    /// The next burst of hostile entry `i`.
    Hostile(u32),
    Liveness,
    Prune,
    /// A target frees its address and another asks.
    IpamChurn,
}

/// One simulated host.
pub struct Host {
    /// Frozen: inputs wait in `held`.
    pub paused: bool,
    /// Bumped on every (re)start.
    pub incarnation: u32,
    timer_gen: u32,
    timer_at: Option<Instant>,
    bridge: Bridge,
    /// Containers attached here (global indices); inline for the usual one or two.
    pub containers: SmallVec<[u32; 2]>,
    /// The router, while the host runs.
    pub router: Option<Router>,
    /// Its name in the scenario.
    pub name: String,
    held: Vec<Ev>,
    /// Hosts its router is told to connect to.
    pub targets: Vec<u32>,
    /// The allocator state as last saved (survives a restart unless wiped).
    pub ipam_saved: Option<router_core::IpamState>,
    /// The addresses its router leases, as last seen.
    ipam_leases: std::collections::BTreeMap<Ipv4Addr, String>,
    /// How many times each target slot churned.
    ipam_gens: std::collections::BTreeMap<u32, u32>,
}

impl Host {
    /// Whether the router runs and is not paused.
    pub fn running(&self) -> bool {
        self.router.is_some() && !self.paused
    }
}

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
    /// Hostile containers' random choices: a stream of their own, so that adding one changes
    /// nothing else.
    hostile_rng: ChaCha8Rng,
    /// Each hostile entry's container and, for a spoofer, its victim (indices).
    hostile_who: Vec<(u32, Option<usize>)>,
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
    /// Recycled lists of frames a router injected, one per drain in progress.
    inject_lists: Vec<Frames>,
    /// The plaintext form of the datagram being sent (password sessions).
    plain: Vec<u8>,
    /// One copy of each peer entry, view leaf and route graph for every router of this world.
    entries: std::sync::Arc<SharedState>,
    /// Every address leased by a running router: its host and target.
    ipam_holders: std::collections::BTreeMap<Ipv4Addr, (u32, String)>,
    /// Churn's choices: a stream of their own.
    ipam_rng: ChaCha8Rng,
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
            hostile_rng: stream(seed, "hostile", 0),
            hostile_who: Vec::new(),
            faults,
            stats: SimStats::default(),
            trace,
            buf: vec![0; TRANSMIT_BUF_MIN],
            out_frames: Vec::new(),
            pool: Vec::new(),
            inject_lists: Vec::new(),
            plain: Vec::new(),
            entries: std::sync::Arc::default(),
            ipam_holders: std::collections::BTreeMap::new(),
            ipam_rng: stream(seed, "ipam", 0),
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
                ipam_saved: None,
                ipam_leases: std::collections::BTreeMap::new(),
                ipam_gens: std::collections::BTreeMap::new(),
            });
        }
        w.make_containers();
        w.schedule_hostile();
        let spread = w.scenario.hosts.start_spread.0.as_micros() as u64;
        for i in 0..n {
            let drawn = if spread > 0 { below(&mut start_rng, spread + 1) } else { 0 };
            let at = match w.scenario.hosts.start.get(&w.hosts[i as usize].name) {
                Some(d) => d.0.as_micros() as u64,
                None => drawn,
            };
            w.push(Instant::from_micros(at), Ev::Start(i));
        }
        for i in 0..w.faults.len() {
            let at = Instant::ZERO + w.faults[i].at.0;
            w.push(at, Ev::Fault(i as u32));
        }
        w.push(Instant::ZERO + w.scenario.faults_end(), Ev::Liveness);
        w.push(Instant::from_millis(5000), Ev::Prune);
        if let Some(p) = w.scenario.ipam.as_ref().and_then(|i| i.churn()) {
            w.push(Instant::ZERO + p, Ev::IpamChurn);
        }
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
            ConnectPlan::Earlier => {
                let seeds = s.router.seeds.unwrap_or(2);
                for a in 1..n {
                    t[a as usize] = self.net.neighbours(a).into_iter().filter(|&b| b < a).take(seeds).collect();
                }
            }
            ConnectPlan::None => {}
        }
        t
    }

    pub(crate) fn push(&mut self, at: Instant, ev: Ev) {
        self.queue.push(at.max(self.now), ev);
    }

    /// The time of the next event.
    pub fn next_time(&mut self) -> Option<Instant> {
        self.queue.peek_time()
    }

    /// Every fault of the run, the drawn random ones included, in time order.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
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
            Ev::Work { .. } | Ev::Hostile(_) => &mut k.work,
            Ev::Start(_) | Ev::Fault(_) | Ev::Liveness | Ev::Prune | Ev::PathMtu { .. } | Ev::IpamChurn => &mut k.other,
        } += 1;
        self.dispatch(ev);
        true
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
            Ev::DialFail { host, .. } | Ev::PathMtu { host, .. } => Some(*host),
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
            Ev::Hostile(i) => self.on_hostile(i),
            Ev::PathMtu { host, to, mtu } => {
                let now = self.now;
                if let Some(r) = self.hosts[host as usize].router.as_mut() {
                    r.handle_path_mtu(now, router_addr(to), mtu);
                    self.drain(host);
                }
            }
            Ev::Liveness => self.on_liveness(),
            Ev::IpamChurn => self.on_ipam_churn(),
            Ev::Prune => {
                self.checker.prune(self.now);
                let next = self.now + Duration::from_secs(5);
                self.push(next, Ev::Prune);
            }
        }
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
        while let Some(e) = self.hosts[h as usize].router.as_mut().and_then(Router::poll_event) {
            match e {
                Event::Dial { conn, addr } => self.dial(h, conn, addr),
                Event::Close { conn } => self.close_stream(h, conn),
                Event::LinkEstablished { peer } => {
                    if let Some(other) = host_of_peer(peer) {
                        self.checker.on_link_change(self.now, h, other, true);
                    }
                }
                Event::LinkLost { peer, .. } => {
                    if let Some(other) = host_of_peer(peer) {
                        self.checker.on_link_change(self.now, h, other, false);
                    }
                }
                Event::IpamChanged => self.ipam_sync(h),
                Event::Allocated(a) if a.result.is_err() => self.stats.ipam_refused += 1,
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
            Fate::Drop(NetDrop::Mtu) => {
                self.stats.net_drop(NetDrop::Mtu, bytes);
                if let Some(mtu) = self.net.mtu_report(h, dst) {
                    let at = self.now + self.net.latency(h, dst);
                    self.push(at, Ev::PathMtu { host: h, to: dst, mtu });
                }
            }
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
}
