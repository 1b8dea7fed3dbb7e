//! Router configuration.

use core::time::Duration;

use crate::crypto::Password;
use crate::peer::PeerName;

/// Everything a [`crate::Router`] is told at birth. Defaults suit a real network; the
/// simulator and tests shorten the timers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our peer name (stable across restarts).
    pub name: PeerName,
    /// Hop limit put on frames we originate.
    pub hop_limit: u8,
    /// Dial peers learned from gossip.
    pub discovery: bool,
    /// The network's password: when set, peers authenticate each other with it (a PAKE in
    /// the handshake) and everything on the control connections and in UDP is encrypted;
    /// peers without it, or with another, are refused.
    pub password: Option<Password>,
    /// Largest UDP payload we send: the ceiling of path MTU discovery. A driver sets it from
    /// the local interface towards the peers (its MTU less the IP and UDP headers).
    pub datagram_max: usize,
    /// Smallest UDP payload every path is assumed to carry: the floor of path MTU discovery
    /// (548 over IPv4: a 576-byte packet; 1,232 over IPv6).
    pub datagram_min: usize,
    /// A path MTU probe unanswered for this long has failed (it is tried once more).
    pub pmtu_probe_timeout: Duration,
    /// A settled path MTU is searched again after this long (it may have grown).
    pub pmtu_recheck: Duration,
    /// UDP heartbeat period once a link is established.
    pub udp_heartbeat: Duration,
    /// A direction with no UDP heartbeat (or ack) for this long is no longer established.
    pub udp_timeout: Duration,
    /// While we send data to a neighbour and hear nothing from it for this long, probe it.
    pub probe_after: Duration,
    /// A human-friendly nickname (the host name, typically).
    pub nickname: String,
    /// Seed of the router's random stream (incarnation UID, session values, jitter).
    pub seed: u64,
    /// TCP port we accept control connections on, advertised for discovery.
    pub tcp_port: u16,
    /// UDP port we receive data and heartbeats on.
    pub udp_port: u16,
    /// Most control connections at once, in either direction.
    pub conn_limit: usize,
    /// Idle time after which a MAC entry expires: it goes after between 1 and 1.1 times
    /// this, as the table is swept at most every tenth of it.
    pub mac_expiry: Duration,
    /// Most MAC entries.
    pub mac_table_max: usize,
    /// Most peers held in the topology; entries for further peers are refused (counted).
    pub peers_max: usize,
    /// Bytes of queued output after which data frames are dropped.
    pub outbox_limit: usize,
    /// Capacity of the output buffer kept once everything queued has been sent: more is
    /// freed. A process running thousands of routers (a simulator) keeps less.
    pub outbox_keep: usize,
    /// A connection's preamble and handshake must finish within this.
    pub handshake_timeout: Duration,
    /// TCP heartbeat period.
    pub tcp_heartbeat: Duration,
    /// A connection with nothing received for this long is closed.
    pub tcp_timeout: Duration,
    /// UDP heartbeat period while a link is being established.
    pub udp_heartbeat_fast: Duration,
    /// Probe period (heartbeats that ask for an immediate reply).
    pub probe_interval: Duration,
    /// A probed neighbour that stays silent this long is declared down: the link is no longer
    /// established and routes move to relays.
    pub probe_timeout: Duration,
    /// Heartbeat round trips needed to bring a failed link back; doubles when the link fails
    /// again within `flap_window` of coming back (hysteresis).
    pub recover_rounds: u32,
    /// See `recover_rounds`.
    pub flap_window: Duration,
    /// Triggered gossip waits this long to coalesce changes.
    pub gossip_coalesce: Duration,
    /// Route recomputation waits this long after a topology change (coalescing changes)...
    pub route_delay_min: Duration,
    /// ...and, while changes keep coming, up to this long (the wait doubles each time).
    pub route_delay_max: Duration,
    /// Period of anti-entropy (summary exchange) and garbage collection.
    pub anti_entropy: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A connection that lived less than this counts as a failure for backoff.
    pub stable_after: Duration,
    /// After a peer at some address failed the password check, further connections from that
    /// address are refused for this long: each try is one online guess, so tries are rate
    /// limited.
    pub password_retry: Duration,
    /// Compute routes only when something needs them (a frame to forward or relay, a status
    /// report, anti-entropy) once the hold after a change has ended, rather than as soon as it
    /// ends. A process of thousands of routers, most of them idle, skips routes nobody uses; a
    /// real router leaves it off, so that peers found and lost are reported at once.
    #[cfg(feature = "many-routers")]
    pub lazy_routes: bool,
    /// The driver's store of state shared between the routers of one process (see
    /// [`crate::share`]). None, the default, shares nothing.
    #[cfg(feature = "many-routers")]
    pub share: Option<std::sync::Arc<dyn crate::share::Share>>,
}

impl Config {
    /// A configuration with the defaults for `name`.
    pub fn new(name: PeerName) -> Self {
        Config {
            name,
            nickname: String::new(),
            seed: 0,
            tcp_port: 6783,
            udp_port: 6783,
            conn_limit: 100,
            discovery: true,
            hop_limit: 64,
            datagram_max: 1472,
            datagram_min: 548,
            pmtu_probe_timeout: Duration::from_millis(500),
            pmtu_recheck: Duration::from_secs(600),
            mac_expiry: Duration::from_secs(600),
            mac_table_max: 65_536,
            peers_max: 65_536,
            outbox_limit: 8 << 20,
            outbox_keep: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            tcp_heartbeat: Duration::from_secs(10),
            tcp_timeout: Duration::from_secs(60),
            udp_heartbeat: Duration::from_secs(1),
            udp_heartbeat_fast: Duration::from_millis(100),
            udp_timeout: Duration::from_secs(5),
            probe_after: Duration::from_millis(100),
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(500),
            recover_rounds: 3,
            flap_window: Duration::from_secs(30),
            gossip_coalesce: Duration::from_millis(10),
            route_delay_min: Duration::from_millis(2),
            route_delay_max: Duration::from_millis(200),
            anti_entropy: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(10),
            password: None,
            password_retry: Duration::from_secs(1),
            #[cfg(feature = "many-routers")]
            lazy_routes: false,
            #[cfg(feature = "many-routers")]
            share: None,
        }
    }
}
