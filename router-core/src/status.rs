//! A serialisable snapshot of everything the router knows.

use std::net::SocketAddr;

use serde::Serialize;

use crate::conn::Phase;
use crate::mac_cache::MacOwner;
use crate::peer::{ConnId, Mac, PeerName, PeerUid};
use crate::router::Router;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::gossip::ConnInfo;

/// The snapshot `weave status` and `weave report` print and the simulator checks.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Our name.
    pub name: PeerName,
    /// Our nickname.
    pub nickname: String,
    /// Our incarnation.
    pub uid: PeerUid,
    /// Our entry's version.
    pub version: u64,
    /// When the snapshot was taken.
    pub now: Instant,
    /// Every peer in our view, ours included.
    pub peers: Vec<PeerStatus>,
    /// Our next hop for every reachable peer.
    pub unicast_routes: Vec<UnicastRoute>,
    /// Our children in each source's broadcast tree (sources with children only).
    pub broadcast_routes: Vec<BroadcastRoute>,
    /// The MAC table.
    pub macs: Vec<MacStatus>,
    /// Control connections.
    pub connections: Vec<ConnStatus>,
    /// Addresses we keep connected to.
    pub targets: Vec<TargetStatus>,
    /// Recently ended connections and why (newest last).
    pub recent_failures: Vec<FailureStatus>,
    /// A password is set: peers must know it, and traffic is encrypted.
    pub encryption: bool,
    /// Counters.
    pub stats: Stats,
    /// The address allocator, when the router runs one.
    pub ipam: Option<crate::ipam::IpamStatus>,
}

/// One peer in the view.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    /// Name.
    pub name: PeerName,
    /// Nickname.
    pub nickname: String,
    /// Incarnation.
    pub uid: PeerUid,
    /// Version.
    pub version: u64,
    /// Reachable over established links.
    pub reachable: bool,
    /// Its advertised connections.
    pub conns: Vec<ConnInfo>,
}

/// A unicast route.
#[derive(Debug, Clone, Serialize)]
pub struct UnicastRoute {
    /// Destination.
    pub dst: PeerName,
    /// Neighbour to send through.
    pub via: PeerName,
    /// Hops.
    pub hops: u32,
}

/// Our part of one source's broadcast tree.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastRoute {
    /// The source.
    pub src: PeerName,
    /// Where we forward its floods.
    pub children: Vec<PeerName>,
}

/// A MAC table entry.
#[derive(Debug, Clone, Serialize)]
pub struct MacStatus {
    /// The address.
    pub mac: Mac,
    /// Where it lives.
    pub owner: MacOwner,
    /// When it was last seen.
    pub last_seen: Instant,
}

/// Where a control connection stands, as `weave status` and `/metrics` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnState {
    /// Dialled, not yet open.
    Connecting,
    /// Open; preamble, handshake or key confirmation under way.
    Handshaking,
    /// Handshake done; UDP heartbeats not yet confirmed both ways.
    AwaitingUdp,
    /// UDP confirmed both ways: the link carries traffic.
    Established,
    /// A second connection to a peer, about to close.
    Duplicate,
}

impl ConnState {
    /// Every state, in the order a connection goes through them.
    pub const ALL: [ConnState; 5] = [
        ConnState::Connecting,
        ConnState::Handshaking,
        ConnState::AwaitingUdp,
        ConnState::Established,
        ConnState::Duplicate,
    ];

    /// The state's name (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Handshaking => "handshaking",
            ConnState::AwaitingUdp => "awaiting-udp",
            ConnState::Established => "established",
            ConnState::Duplicate => "duplicate",
        }
    }
}

impl core::fmt::Display for ConnState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A control connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnStatus {
    /// Id.
    pub id: ConnId,
    /// TCP address of the other end.
    pub remote: SocketAddr,
    /// We dialled it.
    pub outbound: bool,
    /// When it was opened.
    pub opened_at: Instant,
    /// Phase.
    pub phase: Phase,
    /// Where the connection stands, as users see it.
    pub state: ConnState,
    /// The peer, after the handshake.
    pub peer: Option<PeerName>,
    /// The peer's nickname.
    pub nickname: Option<String>,
    /// UDP from the peer reaches us.
    pub udp_rx_ok: bool,
    /// UDP from us reaches the peer.
    pub udp_tx_ok: bool,
    /// Where we send the peer UDP.
    pub udp_addr: Option<SocketAddr>,
    /// Since when the link is established.
    pub established_since: Option<Instant>,
    /// Recent link state changes with their times and reasons, oldest first.
    pub link_changes: Vec<crate::conn::LinkChange>,
    /// Probing the peer (sending data, hearing nothing) since.
    pub probing_since: Option<Instant>,
    /// Everything on this connection and its UDP is sealed with session keys from the PAKE.
    pub encrypted: bool,
    /// The largest UDP payload frames to the peer are sized for (the path MTU less the IP
    /// and UDP headers).
    pub pmtu: u16,
    /// Whether `pmtu` was verified by probes (else it is the upper bound of a search under
    /// way, or a size the kernel reported).
    pub pmtu_verified: bool,
}

/// A target address.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The address.
    pub addr: SocketAddr,
    /// Learned from gossip rather than given.
    pub discovered: bool,
    /// Its connection, if any (while dialling, or once dialled).
    pub conn: Option<ConnId>,
    /// A connection with the peer there is up, whichever side opened it (the peer may have
    /// dialled us first, and then ours is not needed).
    pub connected: bool,
    /// The peer there, once known.
    pub peer: Option<PeerName>,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// The address is ourselves; not dialled.
    pub is_self: bool,
    /// The last error.
    pub last_error: Option<String>,
}

/// A connection that ended.
#[derive(Debug, Clone, Serialize)]
pub struct FailureStatus {
    /// When.
    pub at: Instant,
    /// Remote address.
    pub remote: SocketAddr,
    /// The peer, if known.
    pub peer: Option<PeerName>,
    /// Why.
    pub reason: String,
}

impl Router {
    /// A snapshot of the router's state at `now`.
    pub fn status(&mut self, now: Instant) -> Status {
        self.recompute_if_dirty();
        let me = self.config.name;
        let distances = self.routes.distances();
        let reachable: Vec<PeerName> = distances.iter().map(|&(p, _)| p).collect();
        let peers = self
            .topology
            .peers
            .values()
            .map(|e| PeerStatus {
                name: e.name,
                nickname: e.nickname.clone(),
                uid: e.uid,
                version: e.version,
                reachable: reachable.binary_search(&e.name).is_ok(),
                conns: e.conns.clone(),
            })
            .collect();
        let unicast_routes = reachable
            .iter()
            .filter_map(|&dst| {
                let via = self.routes.next_hop(dst)?;
                let hops = distances[reachable.binary_search(&dst).ok()?].1;
                Some(UnicastRoute { dst, via, hops })
            })
            .collect();
        let broadcast_routes = reachable
            .iter()
            .filter_map(|&src| {
                let children = self.routes.broadcast_children(src).to_vec();
                (!children.is_empty()).then_some(BroadcastRoute { src, children })
            })
            .collect();
        let macs = self
            .macs
            .entries()
            .into_iter()
            .map(|(mac, owner, last_seen)| MacStatus { mac, owner, last_seen })
            .collect();
        let connections = self
            .conns
            .iter()
            .map(|(&id, c)| {
                let peer = c.peer.as_ref().map(|p| p.name);
                let registered = peer.is_some_and(|p| self.by_peer.get(&p) == Some(&id));
                ConnStatus {
                    id,
                    remote: c.remote_addr,
                    outbound: c.outbound,
                    opened_at: c.opened_at,
                    phase: c.phase,
                    state: match c.phase {
                        Phase::Dialing => ConnState::Connecting,
                        Phase::Preamble | Phase::Handshake | Phase::Confirm => ConnState::Handshaking,
                        Phase::Up if !registered => ConnState::Duplicate,
                        Phase::Up if c.established() => ConnState::Established,
                        Phase::Up => ConnState::AwaitingUdp,
                    },
                    peer,
                    nickname: c.peer.as_ref().map(|p| p.nickname.clone()),
                    udp_rx_ok: c.udp_rx_ok,
                    udp_tx_ok: c.udp_tx_ok,
                    udp_addr: c.peer.as_ref().map(|p| p.udp_addr),
                    established_since: c.established_at,
                    link_changes: c.link_log.iter().copied().collect(),
                    probing_since: c.probing_since,
                    encrypted: c.keys.as_ref().is_some_and(|k| k.rx_on),
                    pmtu: c.pmtu.size,
                    pmtu_verified: c.pmtu.verified,
                }
            })
            .collect();
        let targets = self
            .targets
            .iter()
            .map(|(&addr, t)| TargetStatus {
                addr,
                discovered: t.discovered,
                conn: t.conn,
                connected: t.conn.and_then(|id| self.by_peer.get(&self.conns.get(&id)?.peer.as_ref()?.name)).is_some()
                    || t.peer.is_some_and(|p| self.by_peer.contains_key(&p)),
                peer: t.peer,
                attempts: t.attempts,
                is_self: t.is_self,
                last_error: t.last_error.clone(),
            })
            .collect();
        let recent_failures = self
            .recent_failures
            .iter()
            .map(|(at, remote, peer, why)| FailureStatus {
                at: *at,
                remote: *remote,
                peer: *peer,
                reason: why.to_string(),
            })
            .collect();
        Status {
            name: me,
            nickname: self.config.nickname.clone(),
            uid: self.uid,
            version: self.version,
            now,
            peers,
            unicast_routes,
            broadcast_routes,
            macs,
            connections,
            targets,
            recent_failures,
            encryption: self.config.password.is_some(),
            stats: self.stats,
            ipam: self.ipam.as_ref().map(|i| i.status(now, &reachable.iter().copied().chain([me]).collect())),
        }
    }
}
