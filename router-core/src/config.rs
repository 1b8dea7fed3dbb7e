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
    /// (548 over IPv4, a 576-byte packet, and no less; 1,232 over IPv6).
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
    /// Most MAC entries one owner may have (the local bridge is one owner, each peer
    /// another): a container sending from random source MACs fills its owner's share, not
    /// the table. MACs beyond it are not learned (counted in `macs_refused`); their frames
    /// still flood.
    pub mac_per_peer_max: usize,
    /// Frames per second each learned local source MAC may flood (broadcast, multicast or
    /// unknown unicast), in bursts of a tenth of that; sources not learned as local share one
    /// such budget. Frames beyond it are dropped (`FloodLimited`).
    pub flood_rate: u32,
    /// Frames per second all local sources together may flood; a source that flooded nothing
    /// for a second passes whatever this says (see `flood_rate`).
    pub flood_rate_total: u32,
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
    /// While changes keep coming, triggered gossip waits longer: the wait doubles from
    /// `gossip_coalesce` up to this, so versions that supersede each other are sent once.
    pub gossip_delay_max: Duration,
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
    /// The address allocator, if this router runs one.
    pub ipam: Option<crate::ipam::IpamConfig>,
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
            mac_per_peer_max: 4096,
            flood_rate: 1000,
            flood_rate_total: 10_000,
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
            gossip_delay_max: Duration::from_millis(50),
            route_delay_min: Duration::from_millis(2),
            route_delay_max: Duration::from_millis(200),
            anti_entropy: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(10),
            password: None,
            password_retry: Duration::from_secs(1),
            ipam: None,
            #[cfg(feature = "many-routers")]
            lazy_routes: false,
            #[cfg(feature = "many-routers")]
            share: None,
        }
    }
}

/// A setting no router can run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The peer name is the broadcast, a multicast or the all-zero address.
    #[error("{0} cannot name a peer: give a unicast MAC-like name (first byte even), not zero")]
    BadName(PeerName),
    /// An interval of zero (which would wake the router without end) or of more than a day.
    #[error("{field} is {value:?}: give a duration above zero and at most a day")]
    Interval {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
    /// Two settings that contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
    /// A count or size out of its range.
    #[error("{field} is {value}: it must be between {min} and {max}")]
    Range {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The smallest allowed.
        min: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A password, but no source of key material: the seeded stream of [`crate::Router::new`]
    /// is for simulation and tests, never for a password.
    #[error("a password needs key material from the operating system: use Router::with_random")]
    PasswordWithoutRandom,
    /// The allocator's settings.
    #[error("address allocator: {0}")]
    Ipam(#[from] crate::ipam::IpamError),
}

impl Config {
    /// Checks every setting; `Router::new` and `Router::with_random` refuse what fails.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.name.is_unicast() {
            return Err(ConfigError::BadName(self.name));
        }
        const DAY: Duration = Duration::from_secs(86_400);
        for (field, value) in [
            ("udp_heartbeat", self.udp_heartbeat),
            ("udp_heartbeat_fast", self.udp_heartbeat_fast),
            ("udp_timeout", self.udp_timeout),
            ("probe_after", self.probe_after),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("tcp_heartbeat", self.tcp_heartbeat),
            ("tcp_timeout", self.tcp_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("anti_entropy", self.anti_entropy),
            ("mac_expiry", self.mac_expiry),
            ("backoff_min", self.backoff_min),
            ("backoff_max", self.backoff_max),
            ("route_delay_max", self.route_delay_max),
            ("pmtu_probe_timeout", self.pmtu_probe_timeout),
            ("pmtu_recheck", self.pmtu_recheck),
        ] {
            if value.is_zero() || value > DAY {
                return Err(ConfigError::Interval { field, value });
            }
        }
        for (field, value) in [
            ("gossip_coalesce", self.gossip_coalesce),
            ("gossip_delay_max", self.gossip_delay_max),
            ("route_delay_min", self.route_delay_min),
            ("flap_window", self.flap_window),
            ("stable_after", self.stable_after),
            ("password_retry", self.password_retry),
        ] {
            if value > DAY {
                return Err(ConfigError::Interval { field, value });
            }
        }
        if self.udp_timeout < self.udp_heartbeat {
            return Err(ConfigError::Inconsistent("udp_timeout must not be shorter than udp_heartbeat"));
        }
        if self.backoff_min > self.backoff_max {
            return Err(ConfigError::Inconsistent("backoff_min must not be longer than backoff_max"));
        }
        if self.route_delay_min > self.route_delay_max {
            return Err(ConfigError::Inconsistent("route_delay_min must not be longer than route_delay_max"));
        }
        let range = |field, value: usize, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Range { field, value, min, max })
            }
        };
        range("hop_limit", usize::from(self.hop_limit), 1, 255)?;
        range("datagram_max", self.datagram_max, 548, 65_507)?;
        range("datagram_min", self.datagram_min, 548, self.datagram_max)?;
        range("conn_limit", self.conn_limit, 1, 65_535)?;
        range("mac_table_max", self.mac_table_max, 1, 1 << 24)?;
        range("mac_per_peer_max", self.mac_per_peer_max, 1, self.mac_table_max)?;
        range("flood_rate", self.flood_rate as usize, 1, 10_000_000)?;
        range("flood_rate_total", self.flood_rate_total as usize, self.flood_rate as usize, 10_000_000)?;
        range("peers_max", self.peers_max, 2, 1 << 24)?;
        range("outbox_limit", self.outbox_limit, 65_536, 1 << 30)?;
        range("recover_rounds", self.recover_rounds as usize, 1, 64)?;
        if let Some(ipam) = &self.ipam {
            ipam.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerName;

    fn ok() -> Config {
        Config::new(PeerName::from_u64(0x0200_0000_0001))
    }

    #[test]
    fn the_defaults_pass_and_each_bad_setting_is_named() {
        assert_eq!(ok().validate(), Ok(()));
        for name in [PeerName::BROADCAST, PeerName::from_u64(0), PeerName::from_u64(0x0100_0000_0001)] {
            assert_eq!(Config::new(name).validate(), Err(ConfigError::BadName(name)));
        }
        let mut c = ok();
        c.udp_heartbeat = Duration::ZERO;
        assert!(matches!(c.validate(), Err(ConfigError::Interval { field: "udp_heartbeat", .. })));
        let mut c = ok();
        c.anti_entropy = Duration::ZERO;
        assert!(c.validate().unwrap_err().to_string().contains("anti_entropy"));
        let mut c = ok();
        c.mac_expiry = Duration::from_secs(86_401);
        assert!(matches!(c.validate(), Err(ConfigError::Interval { field: "mac_expiry", .. })));
        let mut c = ok();
        c.hop_limit = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Range { field: "hop_limit", .. })));
        let mut c = ok();
        c.udp_timeout = c.udp_heartbeat / 2;
        assert!(matches!(c.validate(), Err(ConfigError::Inconsistent(_))));
        let mut c = ok();
        c.datagram_min = c.datagram_max + 1;
        assert!(matches!(c.validate(), Err(ConfigError::Range { field: "datagram_min", .. })));
    }
}
