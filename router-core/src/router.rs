//! The [`Router`]: one per host, a deterministic state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::{Config, ConfigError};
use crate::conn::{Conn, ConnError, Target};
use crate::crypto::{Random, SeededRandom};
use crate::dedup::Dedup;
use crate::discovery::Discovery;
use crate::flood::FloodBudget;
use crate::mac_cache::MacCache;
use crate::outbox::{Destination, Outbox, Transmit};
use crate::peer::{ConnId, PeerName, PeerUid};
use crate::routes::Routes;
use crate::share::Pool;
use crate::sorted::SortedMap;
use crate::stats::{DropReason, Stats};
use crate::table::Table;
use crate::time::Instant;
use crate::timer::{ConnTimer, Timer, TimerTable};
use crate::topology::{Topology, View};
use crate::wire::control::Message;
use crate::wire::gossip::{ConnInfo, PeerEntry};

/// Something the driver must do, or may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Open a TCP connection to `addr`, then report [`ConnEvent::Connected`] or
    /// [`ConnEvent::Closed`] for `conn`.
    Dial {
        /// The id the core gave this connection.
        conn: ConnId,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Close this connection once its queued bytes are written. The core has forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// A handshake completed.
    ConnectionUp {
        /// The connection.
        conn: ConnId,
        /// The peer at the other end.
        peer: PeerName,
    },
    /// A connection ended.
    ConnectionDown {
        /// The connection.
        conn: ConnId,
        /// The address at its other end.
        remote: SocketAddr,
        /// The peer, if the handshake had told us.
        peer: Option<PeerName>,
        /// Why.
        reason: ConnError,
    },
    /// UDP heartbeats are confirmed both ways with `peer`: the link carries traffic.
    LinkEstablished {
        /// The neighbour.
        peer: PeerName,
    },
    /// The link with `peer` no longer carries traffic.
    LinkLost {
        /// The neighbour.
        peer: PeerName,
        /// Why.
        reason: crate::conn::LinkReason,
    },
    /// `peer` became reachable over established links.
    PeerReachable(PeerName),
    /// `peer` is no longer reachable.
    PeerUnreachable(PeerName),
    /// The topology view changed (routes were recomputed).
    TopologyChanged,
    /// An allocation that had to wait has finished.
    Allocated(crate::ipam::Allocated),
    /// The allocator's persistent state changed: save [`Router::ipam_state`] (with
    /// [`Router::ipam_generation`]) before acting on addresses it handed out, and report
    /// the save with [`Router::ipam_saved`].
    IpamChanged,
}

impl Event {
    /// Events the driver must act on are never dropped when the queue is full.
    fn essential(&self) -> bool {
        matches!(self, Event::Dial { .. } | Event::Close { .. } | Event::Allocated(_) | Event::IpamChanged)
    }
}

/// What the driver reports about a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnEvent {
    /// An outbound connection asked for by [`Event::Dial`] is open.
    Connected,
    /// An outbound connection asked for by [`Event::Dial`] could not be opened, and why.
    DialFailed(DialFailure),
    /// The connection was closed by the other end or by an error (or failed to open, for a
    /// driver that cannot tell why).
    Closed,
}

/// Why a dial failed, as the operating system said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum DialFailure {
    /// Nothing listens at the address (a reset).
    Refused,
    /// No answer within the dial timeout.
    TimedOut,
    /// The host is unreachable (no route to it, or no answer to ARP).
    HostUnreachable,
    /// The network is unreachable (no route at all).
    NetworkUnreachable,
    /// Some other error.
    Other,
}

impl core::fmt::Display for DialFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DialFailure::Refused => "connection refused",
            DialFailure::TimedOut => "timed out",
            DialFailure::HostUnreachable => "no route to host",
            DialFailure::NetworkUnreachable => "network unreachable",
            DialFailure::Other => "could not connect",
        })
    }
}

/// Misuse of the router by its driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The address is not one a peer can listen on.
    #[error("{0} is not a usable peer address: give an IP address and a non-zero port")]
    BadAddress(SocketAddr),
    /// `forget` of an address that is not a target.
    #[error("{0} is not among the peers this router connects to")]
    UnknownTarget(SocketAddr),
}

const EVENTS_MAX: usize = 4096;
const DEDUP_SOURCES_MAX: usize = 65_536;

/// Connections that hold the version of an entry waiting in a triggered gossip.
pub(crate) type Holders = smallvec::SmallVec<[ConnId; 2]>;

/// The sans-IO Weave router.
///
/// # Contract
/// - Inputs are `handle_*` calls and commands, each with `now` first: frames captured on the
///   local bridge ([`Router::handle_frame`]), UDP datagrams ([`Router::handle_datagram`]), TCP
///   connections accepted ([`Router::accept`]) or reported on ([`Router::handle_conn_event`]),
///   their bytes ([`Router::handle_stream`]), and deadlines ([`Router::handle_timeout`]).
/// - After every input the driver drains all outputs: first [`Router::poll_transmit`] until
///   `None` (bytes for the bridge, a connection or a UDP address), then [`Router::poll_event`]
///   until `None` (dial, close, and notifications), then re-arms one timer at
///   [`Router::poll_timeout`].
/// - The router never reads a clock, a random source or a socket: same inputs, same outputs.
/// - Bad bytes from the network are dropped and counted in [`Stats`]; they never cause an
///   error or a panic.
pub struct Router {
    /// UDP source addresses proven by heartbeats.
    pub(crate) by_udp: Table<SocketAddr, ConnId>,
    pub(crate) conns: SortedMap<ConnId, Conn>,
    /// The one connection per peer that completed its handshake and survived duplicates.
    pub(crate) by_peer: SortedMap<PeerName, ConnId>,
    pub(crate) dedup: Dedup,
    pub(crate) macs: MacCache,
    pub(crate) flood: FloodBudget,
    pub(crate) routes: Routes,
    pub(crate) out: Outbox,
    pub(crate) timers: TimerTable,
    pub(crate) events: VecDeque<Event>,
    /// Number of the last frames datagram we originated.
    pub(crate) next_seq: u64,
    /// Length of the plaintext in `scratch_open` of the datagram last opened (0: none).
    pub(crate) opened_len: usize,
    /// With `lazy_routes`: the hold after a change has ended; the next user recomputes.
    pub(crate) routes_due: bool,
    pub(crate) routes_dirty: bool,
    pub(crate) own_dirty: bool,
    pub(crate) discovery: Discovery,
    pub(crate) scratch_peers: Vec<PeerName>,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) uid: PeerUid,
    pub(crate) version: u64,
    pub(crate) topology: Topology,
    pub(crate) next_conn: u32,
    pub(crate) targets: BTreeMap<SocketAddr, Target>,
    /// Entries to send in the next triggered gossip, with the connections known to hold the
    /// version we hold (they sent it to us).
    pub(crate) dirty: BTreeMap<PeerName, Holders>,
    pub(crate) recent_failures: VecDeque<(Instant, SocketAddr, Option<PeerName>, ConnError)>,
    /// When triggered gossip was last sent, and how long the next waits.
    pub(crate) last_flush: Option<Instant>,
    pub(crate) flush_hold: core::time::Duration,
    /// The current wait before recomputing routes after a change.
    pub(crate) route_hold: core::time::Duration,
    pub(crate) last_recompute: Option<Instant>,
    /// Peers found unreachable at the last anti-entropy round.
    pub(crate) gc_candidates: BTreeSet<PeerName>,
    /// The driver's store of shared state (see [`crate::share`]); private without one.
    pub(crate) pool: Pool,
    /// Key material (PAKE scalars).
    pub(crate) random: Box<dyn Random>,
    /// Addresses that recently failed the password check, and until when they are refused.
    pub(crate) auth_blocked: BTreeMap<std::net::IpAddr, Instant>,
    /// The datagram being opened (and, after `opened_len` is set, its plaintext form).
    pub(crate) scratch_open: Vec<u8>,
    /// A sealed control record being opened.
    pub(crate) scratch_record: Vec<u8>,
    /// The address allocator, when configured.
    pub(crate) ipam: Option<crate::ipam::Ipam>,
    /// The allocator has something to do at the next commit.
    pub(crate) ipam_due: bool,
}

impl core::fmt::Debug for Router {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Router").field("name", &self.config.name).field("uid", &self.uid).finish_non_exhaustive()
    }
}

impl Router {
    /// A router with no connections, at time `now`, without a password. Refuses a
    /// configuration that fails [`Config::validate`], and one with a password: key material
    /// must come from a real random source ([`Router::with_random`]; a simulator or a test
    /// passes a seeded one, [`SeededRandom`], on purpose).
    pub fn new(now: Instant, config: Config) -> Result<Router, ConfigError> {
        if config.password.is_some() {
            return Err(ConfigError::PasswordWithoutRandom);
        }
        Router::seeded(now, config)
    }

    /// A router whose key material, password sessions included, comes from a stream seeded
    /// by `config.seed`: the same inputs give the same keys. For simulators and tests only;
    /// never on a real network.
    pub fn seeded(now: Instant, config: Config) -> Result<Router, ConfigError> {
        let random = Box::new(SeededRandom::new(config.seed ^ 0x6b65_7973_6565_6421));
        Router::with_random(now, config, random)
    }

    /// A router with no connections, at time `now`, taking key material from `random`.
    /// Refuses a configuration that fails [`Config::validate`].
    pub fn with_random(now: Instant, config: Config, random: Box<dyn Random>) -> Result<Router, ConfigError> {
        config.validate()?;
        let mut random = random;
        // Keys of the tables others choose the keys of: from the random source, never the seed.
        let mut table_key = || {
            let mut b = [0u8; 32];
            random.fill(&mut b);
            core::array::from_fn::<u64, 4, _>(|i| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
        };
        let (mac_key, udp_key, dedup_key) = (table_key(), table_key(), table_key());
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let uid = PeerUid(rng.next_u64() | 1);
        #[cfg(feature = "many-routers")]
        let pool = Pool::new(config.share.clone());
        #[cfg(not(feature = "many-routers"))]
        let pool = Pool::default();
        let mut r = Router {
            macs: MacCache::new(config.mac_expiry, config.mac_table_max, config.mac_per_peer_max, mac_key),
            // Its own key without another draw from `random` (draws move every later value).
            flood: FloodBudget::new(
                config.flood_rate,
                config.flood_rate_total,
                config.mac_per_peer_max,
                mac_key.map(|k| k.rotate_left(17) ^ 0x5bd1_e995),
            ),
            out: Outbox::new(config.outbox_limit, config.outbox_keep),
            config,
            rng,
            uid,
            version: 0,
            topology: Topology::default(),
            // Keyed as the tables are, without another draw from `random`.
            routes: Routes::keyed(udp_key.map(|k| k.rotate_left(29) ^ 0x2545_f491)),
            routes_dirty: true,
            own_dirty: true,
            conns: SortedMap::default(),
            next_conn: 0,
            by_peer: SortedMap::default(),
            by_udp: Table::with_key(udp_key),
            targets: BTreeMap::new(),
            timers: TimerTable::default(),
            events: VecDeque::new(),
            stats: Stats::default(),
            dirty: BTreeMap::new(),
            recent_failures: VecDeque::new(),
            scratch_peers: Vec::new(),
            discovery: Discovery::default(),
            next_seq: 0,
            dedup: Dedup::new(DEDUP_SOURCES_MAX, dedup_key),
            route_hold: core::time::Duration::ZERO,
            last_flush: None,
            flush_hold: core::time::Duration::ZERO,
            last_recompute: None,
            routes_due: false,
            gc_candidates: BTreeSet::new(),
            pool,
            random,
            auth_blocked: BTreeMap::new(),
            scratch_open: Vec::new(),
            opened_len: 0,
            scratch_record: Vec::new(),
            ipam: None,
            ipam_due: false,
        };
        r.route_hold = r.config.route_delay_min;
        let ceiling = r.pmtu_ceiling();
        r.routes.set_ceiling(ceiling);
        // A random start: a restarted peer's numbers do not collide with its last life's.
        r.next_seq = r.rng.next_u64() >> 1;
        let first = now + r.jittered(r.config.anti_entropy);
        r.timers.set(Timer::AntiEntropy, first);
        if let Some(cfg) = r.config.ipam.clone() {
            let me = crate::ipam::Owner { name: r.config.name, life: r.rng.next_u32() };
            r.ipam = Some(crate::ipam::Ipam::new(cfg, me, None)?);
            r.ipam_due = true;
        }
        r.commit(now);
        Ok(r)
    }

    /// Our name.
    pub fn name(&self) -> PeerName {
        self.config.name
    }

    /// Our incarnation.
    pub fn uid(&self) -> PeerUid {
        self.uid
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The routes of the current view.
    pub fn routes(&mut self) -> &mut Routes {
        self.recompute_if_dirty();
        &mut self.routes
    }

    /// Every peer entry in our view, ours included.
    pub fn topology(&self) -> &View {
        &self.topology.peers
    }

    /// Moves the next output into `buf` (at least [`crate::TRANSMIT_BUF_MIN`] bytes).
    #[inline]
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        // The last call of every drain finds nothing: it need not enter the whole function.
        if self.out.is_empty() {
            return None;
        }
        self.poll_transmit_inner(buf, None)
    }

    /// [`Router::poll_transmit`], also copying the plaintext form of each UDP datagram (before
    /// sealing) into `plain`, which is cleared for other outputs: for simulators and tests that
    /// check what travels inside encrypted datagrams.
    pub fn poll_transmit_with_plaintext(&mut self, buf: &mut [u8], plain: &mut Vec<u8>) -> Option<Transmit> {
        self.poll_transmit_inner(buf, Some(plain))
    }

    /// The plaintext form of the datagram the last [`Router::handle_datagram`] opened; empty
    /// when it was not sealed or failed authentication. For simulators and tests.
    pub fn last_opened(&self) -> &[u8] {
        &self.scratch_open[..self.opened_len]
    }

    fn poll_transmit_inner(&mut self, buf: &mut [u8], mut plain: Option<&mut Vec<u8>>) -> Option<Transmit> {
        let t = loop {
            let (mut t, seal) = self.out.poll(buf)?;
            if let Some(p) = plain.as_deref_mut() {
                p.clear();
                if matches!(t.dest, Destination::Udp(_)) {
                    p.extend_from_slice(&buf[..t.len]);
                }
            }
            let Some(id) = seal else { break t };
            // Sealed as it leaves, so nonces go out in counter order.
            let Some(keys) = self.conns.get_mut(&id).and_then(|c| c.keys.as_deref_mut()) else {
                self.stats.drop(DropReason::NoRoute, 1);
                continue;
            };
            if buf.len() < t.len + crate::crypto::DATAGRAM_OVERHEAD {
                self.stats.drop(DropReason::Oversize, 1);
                continue;
            }
            match keys.udp_tx.seal_datagram(buf, t.len) {
                Ok(n) => t.len = n,
                Err(_) => {
                    tracing::error!(conn = %id, "UDP key out of nonces; datagram dropped");
                    continue;
                }
            }
            break t;
        };
        match t.dest {
            Destination::Udp(_) => {
                self.stats.datagrams_sent += 1;
                self.stats.udp_bytes_sent += t.len as u64;
            }
            Destination::Conn(_) => self.stats.tcp_bytes_sent += t.len as u64,
            Destination::Bridge => {}
        }
        Some(t)
    }

    /// Queues a control message to `id`, sealed once the connection's keys are in place.
    /// Returns the bytes queued.
    pub(crate) fn send_msg(&mut self, id: ConnId, msg: &Message) -> usize {
        let seal = self.conns.get_mut(&id).and_then(|c| c.keys.as_deref_mut()).map(|k| &mut k.tcp_tx);
        self.out.message(id, msg, seal)
    }

    /// Which connection's key seals UDP sent over `conn` (none without a password).
    #[inline]
    pub(crate) fn seal_for(&self, conn: ConnId) -> Option<ConnId> {
        self.config.password.is_some().then_some(conn)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        // A first convergence queues one event per peer; do not keep that room for life.
        if e.is_none() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
        }
        e
    }

    /// The earliest deadline; call [`Router::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every job due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::GossipFlush => self.flush_gossip_throttled(now),
                Timer::AntiEntropy => self.anti_entropy(now),
                Timer::MacSweep => self.sweep_macs(now),
                Timer::Routes if self.lazy_routes() => self.routes_due = true,
                Timer::Routes => self.recompute_throttled(now),
                Timer::Redial(addr) => self.redial(now, addr),
                Timer::Ipam => self.ipam_due = true,
                Timer::Conn(id, ct) => self.conn_timer(now, id, ct),
            }
        }
        self.commit(now);
    }

    fn conn_timer(&mut self, now: Instant, id: ConnId, t: ConnTimer) {
        match t {
            ConnTimer::Handshake => self.close(now, id, ConnError::HandshakeTimeout, None),
            ConnTimer::TcpHeartbeat => self.send_tcp_heartbeat(now, id),
            ConnTimer::TcpTimeout => self.check_tcp_timeout(now, id),
            ConnTimer::UdpHeartbeat => self.send_udp_heartbeat(now, id),
            ConnTimer::UdpTimeout => self.check_udp_timeout(now, id),
            ConnTimer::Pmtu => self.pmtu_timer(now, id),
        }
    }

    pub(crate) fn push_event(&mut self, e: Event) {
        if self.events.len() < EVENTS_MAX || e.essential() {
            self.events.push_back(e);
        }
    }

    /// A duration scaled by a random factor in [0.5, 1.0].
    pub(crate) fn jittered(&mut self, d: core::time::Duration) -> core::time::Duration {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let half = micros / 2;
        core::time::Duration::from_micros(half + self.rng.next_u64() % (micros - half + 1))
    }

    pub(crate) fn alloc_conn_id(&mut self) -> ConnId {
        self.next_conn = self.next_conn.wrapping_add(1);
        while self.conns.contains_key(&ConnId(self.next_conn)) {
            self.next_conn = self.next_conn.wrapping_add(1);
        }
        ConnId(self.next_conn)
    }

    /// Whether routes wait for a user once their hold has ended (`Config::lazy_routes`).
    #[inline]
    pub(crate) fn lazy_routes(&self) -> bool {
        #[cfg(feature = "many-routers")]
        return self.config.lazy_routes;
        #[cfg(not(feature = "many-routers"))]
        false
    }

    /// Finishes an input: rebuilds our entry, recomputes routes, schedules gossip.
    pub(crate) fn commit(&mut self, now: Instant) {
        if self.own_dirty {
            self.own_dirty = false;
            self.rebuild_own_entry();
        }
        if self.routes_dirty && !self.routes_due && self.timers.get(Timer::Routes).is_none() {
            self.timers.set(Timer::Routes, now + self.route_hold);
        }
        if self.topology.peers.unshared() && self.pool.is_shared() {
            self.topology.peers.share(&self.pool);
        }
        if !self.dirty.is_empty() && self.timers.get(Timer::GossipFlush).is_none() {
            self.timers.set(Timer::GossipFlush, now + self.flush_hold.max(self.config.gossip_coalesce));
        }
        if self.config.discovery && self.discovery.pending {
            self.discover(now);
        }
        if self.ipam.is_some() {
            self.ipam_commit(now);
        }
    }

    /// Our entry as our established links make it; a change bumps our version.
    fn rebuild_own_entry(&mut self) {
        // Only links that carry traffic are advertised: a connection whose UDP is not
        // confirmed both ways changes nothing for routing and would only churn gossip.
        let conns: Vec<ConnInfo> = self
            .by_peer
            .iter()
            .filter(|(_, id)| self.conns[id].established())
            .map(|(&peer, id)| {
                let c = &self.conns[id];
                ConnInfo {
                    peer,
                    established: true,
                    outbound: c.outbound,
                    addr: c.peer.as_ref().map(|p| p.listen_addr),
                    mtu: c.pmtu.verified.then_some(c.pmtu.size),
                }
            })
            .collect();
        let me = self.config.name;
        if let Some(cur) = self.topology.peers.get(&me) {
            if cur.conns == conns && cur.uid == self.uid && cur.version == self.version {
                return;
            }
        }
        self.version += 1;
        let entry =
            PeerEntry { name: me, uid: self.uid, version: self.version, nickname: self.config.nickname.clone(), conns };
        self.topology.peers.insert(self.pool.entry(std::sync::Arc::new(entry)));
        self.topology.changed();
        self.dirty.insert(me, Holders::new());
        self.routes_dirty = true;
    }

    /// Recomputes routes when the throttle allows: changes that keep coming are coalesced
    /// with a wait that doubles (up to `route_delay_max`) and resets after a quiet spell.
    fn recompute_throttled(&mut self, now: Instant) {
        let max = self.config.route_delay_max;
        let busy = self.last_recompute.is_some_and(|t| now - t < max * 2);
        self.route_hold = if busy { (self.route_hold * 2).min(max) } else { self.config.route_delay_min };
        self.last_recompute = Some(now);
        self.recompute_if_dirty();
    }

    /// The routes for forwarding at `now`: with `lazy_routes`, recomputed first when due.
    pub(crate) fn routes_now(&mut self, now: Instant) -> &mut Routes {
        if self.routes_due {
            self.recompute_throttled(now);
        }
        &mut self.routes
    }

    pub(crate) fn recompute_if_dirty(&mut self) {
        self.routes_due = false;
        if !self.routes_dirty {
            return;
        }
        self.routes_dirty = false;
        self.timers.cancel(Timer::Routes);
        let before = self.routes.reach();
        if self.pool.is_shared() {
            self.topology.peers.share(&self.pool);
            let key = self.topology.peers.leaf_key();
            let graph = self.pool.graph(&self.topology.peers, key, self.routes.key());
            self.routes.rebuild_on(graph, self.config.name);
        } else {
            self.routes.rebuild(&self.topology.peers, self.config.name);
        }
        self.stats.route_recomputes += 1;
        let (lost, found) = before.changes(&self.routes, self.config.name);
        drop(before);
        self.ipam_due |= !lost.is_empty() || !found.is_empty();
        for p in lost {
            self.macs.forget_peer(p);
            self.push_event(Event::PeerUnreachable(p));
        }
        for p in found {
            self.discovery.reachable(p);
            self.push_event(Event::PeerReachable(p));
        }
        self.discovery.pending = true;
        self.push_event(Event::TopologyChanged);
    }
}
