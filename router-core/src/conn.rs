//! Control connections: their state, and what ends them.

use core::fmt;
use core::time::Duration;
use std::net::SocketAddr;

use crate::crypto::{Pake, Session};
use crate::peer::{ConnId, PeerName, PeerUid};
use crate::time::Instant;
use crate::timer::{ConnTimer, Timer, TimerTable};
use crate::wire::control::{Handshake, RefuseReason};
use crate::wire::DecodeError;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Phase {
    /// We asked the driver to dial; waiting for [`crate::ConnEvent::Connected`].
    Dialing,
    /// Our preamble and handshake are sent; waiting for the peer's preamble.
    Preamble,
    /// Waiting for the peer's handshake.
    Handshake,
    /// Password sessions: our key confirmation is sent; waiting for the peer's.
    Confirm,
    /// Handshake done: gossip flows; UDP heartbeats decide whether the link is established.
    Up,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer refused us.
    RefusedByPeer(RefuseReason),
    /// We refused the peer.
    Refused(RefuseReason),
    /// The driver reported the connection closed.
    Closed,
    /// The driver could not connect.
    DialFailed(crate::router::DialFailure),
    /// The peer sent something undecodable.
    Malformed(String),
    /// Preamble and handshake took too long.
    HandshakeTimeout,
    /// Nothing received for the TCP timeout.
    Timeout,
    /// A newer incarnation of the peer connected.
    Replaced,
    /// `forget` or shutdown.
    Forgotten,
    /// A sealed control record failed authentication: tampered with, or not from the peer.
    Unauthenticated,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::RefusedByPeer(r) => write!(f, "refused by peer: {r}"),
            ConnError::Refused(r) => write!(f, "refused: {r}"),
            ConnError::Closed => f.write_str("connection closed"),
            ConnError::DialFailed(why) => write!(f, "dial failed: {why}"),
            ConnError::Malformed(e) => write!(f, "malformed message: {e}"),
            ConnError::HandshakeTimeout => f.write_str("handshake timed out"),
            ConnError::Timeout => f.write_str("no traffic within the TCP timeout"),
            ConnError::Replaced => f.write_str("replaced by a newer incarnation of the peer"),
            ConnError::Forgotten => f.write_str("forgotten"),
            ConnError::Unauthenticated => {
                f.write_str("a control record failed authentication (tampered with on the way, or not from the peer)")
            }
        }
    }
}

impl From<DecodeError> for ConnError {
    fn from(e: DecodeError) -> Self {
        ConnError::Malformed(e.to_string())
    }
}

/// What we learned from the peer's handshake. Laid out in declaration order (`repr(C)`):
/// the UDP address, read for every datagram sent, first.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Remote {
    /// Where we send UDP: the advertised port at first, then wherever heartbeats come from.
    pub(crate) udp_addr: SocketAddr,
    /// The peer's session value; our heartbeats echo it.
    pub(crate) session: u64,
    pub(crate) name: PeerName,
    pub(crate) uid: PeerUid,
    pub(crate) nickname: String,
    /// Where the peer accepts control connections.
    pub(crate) listen_addr: SocketAddr,
}

/// One control connection.
///
/// Laid out in declaration order (`repr(C)`) and aligned to a cache line: what every datagram
/// reads or writes comes first and fills whole lines (three), so that relaying to or hearing
/// from a peer touches those lines and not the handshake's.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Conn {
    // ---- Read or written for every datagram to or from the peer. ----
    pub(crate) last_udp_rx: Instant,
    pub(crate) last_udp_ack: Instant,
    /// When the next regular heartbeat is due.
    pub(crate) next_heartbeat: Instant,
    /// When the next probe is due, while probing.
    pub(crate) next_probe: Instant,
    /// Since when we probe the peer (we send data and hear nothing).
    pub(crate) probing_since: Option<Instant>,
    /// The first data sent to the peer since we last heard from it.
    pub(crate) sent_unheard: Option<Instant>,
    /// When we last answered a frames datagram that asked for a heartbeat (rate limit).
    pub(crate) answered_at: Option<Instant>,
    /// When our last watch on data sent began (floods start one at most once a period).
    pub(crate) watched_at: Option<Instant>,
    /// Our session value on this connection; heartbeats to us must echo it.
    pub(crate) session: u64,
    /// Password sessions: the keys, once the PAKE finished. Everything we send after our key
    /// confirmation is sealed with them.
    pub(crate) keys: Option<Box<Session>>,
    pub(crate) udp_seq: u32,
    /// The highest heartbeat sequence number received from the peer (echoed back to it).
    pub(crate) udp_rx_seq: u32,
    /// The highest of our sequence numbers the peer proved it received.
    pub(crate) proven_seq: u32,
    pub(crate) phase: Phase,
    /// UDP from the peer reaches us.
    pub(crate) udp_rx_ok: bool,
    /// UDP from us reaches the peer (it acknowledged a heartbeat).
    pub(crate) udp_tx_ok: bool,
    pub(crate) outbound: bool,
    /// What the handshake told us (its UDP address first: with the fields above, the first
    /// three lines hold all that relaying to the peer reads).
    pub(crate) peer: Option<Remote>,
    /// The UDP source address bound to this connection in the router's lookup table.
    pub(crate) udp_bound: Option<SocketAddr>,
    // ---- The rest: handshake, TCP, status. ----
    /// The TCP address of the other end.
    pub(crate) remote_addr: SocketAddr,
    /// The target this connection was dialled for.
    pub(crate) target: Option<SocketAddr>,
    /// One side was told to make this connection (its target is given, not discovered):
    /// a router at its limit keeps such connections before the others.
    pub(crate) given: bool,
    pub(crate) inbuf: Vec<u8>,
    pub(crate) version: u8,
    pub(crate) opened_at: Instant,
    pub(crate) up_at: Option<Instant>,
    pub(crate) last_tcp_rx: Instant,
    pub(crate) established_at: Option<Instant>,
    /// Round trips proven since the link last failed.
    pub(crate) rounds: u32,
    /// Round trips needed to (re-)establish the link.
    pub(crate) rounds_needed: u32,
    /// When the link last came back after a failure.
    pub(crate) recovered_at: Option<Instant>,
    /// Recent link state changes, oldest first (bounded).
    pub(crate) link_log: std::collections::VecDeque<LinkChange>,
    /// Password sessions: our PAKE run, until the peer's handshake finishes it.
    pub(crate) pake: Option<Pake>,
    /// Password sessions: our handshake body as sent (half of the transcript).
    pub(crate) hs_sent: Vec<u8>,
    /// Password sessions: the peer's handshake, held until its key confirmation checks out.
    pub(crate) pending: Option<Box<Handshake>>,
    /// Path MTU discovery towards the peer.
    pub(crate) pmtu: Pmtu,
}

/// What we know of the largest UDP payload that passes to the peer, and the search for it.
///
/// `lo` passes (verified by an acknowledged probe, or the floor), `hi` is the largest that
/// may pass (the ceiling, or one less than a probe that failed twice). Rounds of probes
/// narrow the two until they meet within [`PMTU_PRECISION`] bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pmtu {
    /// The payload size frames to the peer are sized for: `lo` once verified, else the
    /// ceiling (optimistic, as a kernel's own path MTU discovery is).
    pub(crate) size: u16,
    pub(crate) verified: bool,
    pub(crate) lo: u16,
    pub(crate) hi: u16,
    /// The probes of the round under way: (id, size, acknowledged).
    pub(crate) round: Vec<(u32, u16, bool)>,
    /// Sizes that went unacknowledged in the last round (they are tried once more before
    /// `hi` falls below them: a lost probe is not a narrow path).
    pub(crate) missed: Vec<u16>,
    pub(crate) next_id: u32,
}

/// The search stops once the bounds are this close (bytes).
pub(crate) const PMTU_PRECISION: u16 = 8;

/// A link state change, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LinkChange {
    /// When.
    pub at: Instant,
    /// Established after the change.
    pub established: bool,
    /// Why.
    pub reason: LinkReason,
}

/// Why a link changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkReason {
    /// Heartbeats confirmed both directions.
    Confirmed,
    /// We sent data and the peer answered no probe within the probe timeout.
    ProbeTimeout,
    /// No heartbeat from the peer within the UDP timeout.
    HeartbeatTimeout,
    /// The peer stopped acknowledging our heartbeats within the UDP timeout.
    AckTimeout,
}

impl LinkReason {
    /// Every reason.
    pub const ALL: [LinkReason; 4] =
        [LinkReason::Confirmed, LinkReason::ProbeTimeout, LinkReason::HeartbeatTimeout, LinkReason::AckTimeout];

    /// snake_case name, for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkReason::Confirmed => "confirmed",
            LinkReason::ProbeTimeout => "probe_timeout",
            LinkReason::HeartbeatTimeout => "heartbeat_timeout",
            LinkReason::AckTimeout => "ack_timeout",
        }
    }
}

impl fmt::Display for LinkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkReason::Confirmed => "heartbeats confirmed both ways",
            LinkReason::ProbeTimeout => "no answer to probes while sending",
            LinkReason::HeartbeatTimeout => "no heartbeat from the peer",
            LinkReason::AckTimeout => "the peer stopped acknowledging our heartbeats",
        })
    }
}

impl Conn {
    pub(crate) fn new(now: Instant, outbound: bool, remote_addr: SocketAddr, session: u64) -> Self {
        Conn {
            outbound,
            remote_addr,
            target: None,
            given: false,
            phase: if outbound { Phase::Dialing } else { Phase::Preamble },
            inbuf: Vec::new(),
            version: 0,
            session,
            peer: None,
            opened_at: now,
            up_at: None,
            last_tcp_rx: now,
            udp_rx_ok: false,
            udp_tx_ok: false,
            udp_seq: 0,
            last_udp_rx: now,
            last_udp_ack: now,
            udp_bound: None,
            established_at: None,
            udp_rx_seq: 0,
            proven_seq: 0,
            probing_since: None,
            sent_unheard: None,
            answered_at: None,
            watched_at: None,
            next_heartbeat: now,
            next_probe: now,
            rounds: 0,
            rounds_needed: 1,
            recovered_at: None,
            link_log: std::collections::VecDeque::new(),
            pake: None,
            hs_sent: Vec::new(),
            keys: None,
            pending: None,
            pmtu: Pmtu::default(),
        }
    }

    /// The last time anything proved the peer alive over UDP.
    pub(crate) fn last_heard(&self) -> Instant {
        self.last_udp_rx.max(self.last_udp_ack)
    }

    /// Data is being sent to the peer (connection `id`) at `now`: starts a watch when one is
    /// due (see `Router::note_sent`), arming the heartbeat timer for `now + probe_after`, and
    /// says so; the caller then asks the peer to answer.
    #[inline]
    pub(crate) fn watch(
        &mut self,
        id: ConnId,
        timers: &mut TimerTable,
        now: Instant,
        (probe_after, period): (Duration, Duration),
        flood: bool,
    ) -> bool {
        // A watch ends when its deadline passes; one answered before that ends here, at the
        // next send after the deadline, without a wake-up of its own.
        let over = self.sent_unheard.is_none_or(|t| now >= t + probe_after && self.last_heard() >= t);
        let due = !flood || self.watched_at.is_none_or(|t| now >= t + period);
        if over && due && self.probing_since.is_none() {
            self.sent_unheard = Some(now);
            self.watched_at = Some(now);
            timers.set_if_earlier(Timer::Conn(id, ConnTimer::UdpHeartbeat), now + probe_after);
            return true;
        }
        false
    }

    /// UDP is confirmed both ways.
    pub(crate) fn established(&self) -> bool {
        self.phase == Phase::Up && self.udp_rx_ok && self.udp_tx_ok
    }

    /// The rank used to settle duplicate connections: (initiator's name, initiator's session).
    /// Both ends compute the same rank for the same connection; the lower rank survives.
    pub(crate) fn rank(&self, me: PeerName) -> (PeerName, u64) {
        let peer = self.peer.as_ref().expect("ranked only after the handshake");
        if self.outbound {
            (me, self.session)
        } else {
            (peer.name, peer.session)
        }
    }
}

/// A peer address we keep connected to: given by `connect`, or discovered from gossip.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub(crate) discovered: bool,
    pub(crate) conn: Option<ConnId>,
    pub(crate) attempts: u32,
    /// The peer at this address, once a handshake told us.
    pub(crate) peer: Option<PeerName>,
    /// The address leads to ourselves; never dialled again.
    pub(crate) is_self: bool,
    /// A connection to this address completed its handshake at least once.
    pub(crate) answered: bool,
    pub(crate) last_error: Option<String>,
}
