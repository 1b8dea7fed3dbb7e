//! The scenario file format (TOML), documented in `docs/scenarios.md`.
//!
//! Unknown keys and bad values are refused with a message that names the place in the file.

use std::collections::BTreeMap;

use router_core::Duration;
use serde::{Deserialize, Serialize};

mod checks;
mod hostile;
mod ipam;
mod validate;
mod values;

use validate::invalid;

pub use checks::{Checks, LinkChanges, Window};
pub use hostile::{Hostile, HostileKind};
pub use ipam::Ipam;
pub use values::{Dur, Subnet};

fn default_seed() -> u64 {
    1
}
fn yes() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, printed in reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice; `--seed` overrides it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time to run.
    pub duration: Dur,
    /// The hosts.
    pub hosts: Hosts,
    /// Which hosts can reach each other directly.
    #[serde(default)]
    pub underlay: Underlay,
    /// Named link classes; `default` applies where nothing else is said.
    #[serde(default)]
    pub link_classes: BTreeMap<String, LinkClass>,
    /// Per-link class overrides.
    #[serde(default)]
    pub links: Vec<LinkOverride>,
    /// Router settings and whom each router is told to connect to.
    #[serde(default)]
    pub router: RouterSettings,
    /// Faults at given times.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// A random fault schedule drawn from the seed.
    #[serde(default)]
    pub random_faults: Option<RandomFaults>,
    /// Containers and their traffic.
    #[serde(default)]
    pub workload: Workload,
    /// Containers that misbehave for a while.
    #[serde(default)]
    pub hostile: Vec<Hostile>,
    /// What must hold.
    #[serde(default)]
    pub checks: Checks,
    /// The address allocator and targets that ask it for addresses.
    #[serde(default)]
    pub ipam: Option<Ipam>,
}

/// The hosts: a count (named h0, h1, …) or a list of names.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Hosts {
    /// Number of hosts named h0, h1, ….
    #[serde(default)]
    pub count: Option<usize>,
    /// Explicit names.
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// Hosts start at random times within this spread (a join storm when short).
    #[serde(default)]
    pub start_spread: Dur,
    /// Hosts that start at a given time instead (late joiners): host name → time.
    #[serde(default)]
    pub start: BTreeMap<String, Dur>,
}

/// Underlay shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// Every pair linked.
    #[default]
    FullMesh,
    /// h0 – h1 – … – hN.
    Line,
    /// A line closed into a ring.
    Ring,
    /// Everyone linked to the first host.
    Star,
    /// A random connected graph of about `degree` links per host.
    Random,
    /// Exactly `links`.
    Explicit,
}

/// The underlay.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Underlay {
    /// The shape.
    #[serde(default)]
    pub shape: Shape,
    /// Links per host for `random`.
    #[serde(default = "default_degree")]
    pub degree: usize,
    /// Links for `explicit`, as pairs of host names.
    #[serde(default)]
    pub links: Vec<[String; 2]>,
    /// The link class of every link not overridden.
    #[serde(default = "default_class")]
    pub class: String,
}

fn default_degree() -> usize {
    4
}
fn default_class() -> String {
    "default".into()
}

impl Default for Underlay {
    fn default() -> Self {
        Underlay { shape: Shape::FullMesh, degree: 4, links: Vec::new(), class: default_class() }
    }
}

/// How one kind of link behaves (each direction independently).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkClass {
    /// One-way latency.
    pub latency: Dur,
    /// Uniform extra latency, up to this.
    pub jitter: Dur,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Per datagram, the probability of entering a loss burst.
    pub burst_enter: f64,
    /// Per datagram in a burst, the probability of leaving it.
    pub burst_exit: f64,
    /// Loss probability inside a burst.
    pub burst_loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay` (overtaken by later ones).
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Dur,
    /// Largest datagram (UDP payload) the link carries; larger ones are dropped.
    pub mtu: usize,
    /// Whether the sender learns of a datagram dropped for its size (as from an ICMP
    /// "fragmentation needed" its kernel receives); false makes the link a black hole.
    pub icmp: bool,
    /// Bandwidth in Mbit/s; 0 is unlimited.
    pub bandwidth_mbps: f64,
    /// Most queueing delay before datagrams are dropped (with a bandwidth set).
    pub queue: Dur,
}

impl Default for LinkClass {
    fn default() -> Self {
        LinkClass {
            latency: Dur(Duration::from_micros(500)),
            jitter: Dur(Duration::ZERO),
            loss: 0.0,
            burst_enter: 0.0,
            burst_exit: 0.5,
            burst_loss: 1.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Dur(Duration::from_millis(5)),
            mtu: 1472,
            icmp: true,
            bandwidth_mbps: 0.0,
            queue: Dur(Duration::from_millis(50)),
        }
    }
}

/// A link with a class of its own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    /// One end.
    pub a: String,
    /// The other end.
    pub b: String,
    /// The class.
    pub class: String,
}

/// Whom each router is told to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectPlan {
    /// Each host connects to its underlay neighbours with a higher index.
    #[default]
    Underlay,
    /// Every host connects to the first host.
    First,
    /// Each host connects to the previous one.
    Chain,
    /// As listed in `router.peers`.
    Explicit,
    /// Each host connects to at most `router.seeds` of its underlay neighbours with a lower
    /// index (those that started before it, in a join): a sparse start that discovery must
    /// complete.
    Earlier,
    /// Nobody is told anything.
    None,
}

/// Router settings; durations left out keep the router's defaults.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// Whom each router connects to.
    #[serde(default)]
    pub connect: ConnectPlan,
    /// For `explicit`: host name → names of hosts it connects to.
    #[serde(default)]
    pub peers: BTreeMap<String, Vec<String>>,
    /// For `earlier`: how many earlier neighbours each host is told of (default 2).
    #[serde(default)]
    pub seeds: Option<usize>,
    /// Dial peers learned from gossip.
    #[serde(default)]
    pub discovery: bool,
    /// Compute routes only when a frame needs them (`router_core::Config::lazy_routes`).
    #[serde(default)]
    pub lazy_routes: bool,
    /// Hop limit of originated frames.
    pub hop_limit: Option<u8>,
    /// Connection limit.
    pub conn_limit: Option<usize>,
    /// UDP heartbeat period once established.
    pub udp_heartbeat: Option<Dur>,
    /// UDP silence after which a direction is down.
    pub udp_timeout: Option<Dur>,
    /// TCP heartbeat period.
    pub tcp_heartbeat: Option<Dur>,
    /// TCP silence after which a connection is closed.
    pub tcp_timeout: Option<Dur>,
    /// Anti-entropy period.
    pub anti_entropy: Option<Dur>,
    /// Triggered-gossip coalescing delay.
    pub gossip_coalesce: Option<Dur>,
    /// Longest wait of triggered gossip while changes keep coming.
    pub gossip_delay_max: Option<Dur>,
    /// First reconnect delay.
    pub backoff_min: Option<Dur>,
    /// Longest reconnect delay.
    pub backoff_max: Option<Dur>,
    /// MAC idle expiry.
    pub mac_expiry: Option<Dur>,
    /// Flooded frames per second per local source MAC (`router_core::Config::flood_rate`).
    pub flood_rate: Option<u32>,
    /// Flooded frames per second from all local sources (`Config::flood_rate_total`).
    pub flood_rate_total: Option<u32>,
    /// The network's password: every router authenticates its peers with it and encrypts.
    pub password: Option<String>,
    /// Per-host passwords overriding `password` (host name → password; "" for none).
    #[serde(default)]
    pub passwords: BTreeMap<String, String>,
}

/// One fault at a time. (Unknown keys are refused by the action's own fields.)
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Fault {
    /// When, from the start.
    pub at: Dur,
    /// What.
    #[serde(flatten)]
    pub action: FaultAction,
}

/// Fault actions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultAction {
    /// Hosts in different groups cannot reach each other (hosts in no group form one more).
    Partition {
        /// The groups.
        groups: Vec<Vec<String>>,
    },
    /// Traffic from `from` to `to` is dropped; the other way works.
    OneWay {
        /// Senders.
        from: Vec<String>,
        /// Receivers.
        to: Vec<String>,
    },
    /// Ends every partition and one-way partition.
    Heal,
    /// Cuts one underlay link (both directions, TCP and UDP).
    Cut {
        /// One end.
        a: String,
        /// The other end.
        b: String,
    },
    /// Repairs a cut link.
    Repair {
        /// One end.
        a: String,
        /// The other end.
        b: String,
    },
    /// Silently drops UDP between two hosts (TCP still works).
    UdpBlock {
        /// One end.
        a: String,
        /// The other end.
        b: String,
    },
    /// Silently drops UDP from `from` to `to` only (TCP, and UDP the other way, still work).
    UdpBlockOneWay {
        /// The sender whose datagrams are lost.
        from: String,
        /// The receiver.
        to: String,
    },
    /// Gives one underlay link another link class (latency, loss, MTU, bandwidth…) from now
    /// on: a sequence of these is a schedule of link properties.
    LinkClass {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// The class, from `[link_classes]` (or `default`).
        class: String,
    },
    /// Ends a UDP block, both ways and one-way ones too.
    UdpUnblock {
        /// One end.
        a: String,
        /// The other end.
        b: String,
    },
    /// Changes the largest datagram (UDP payload) one link carries, both ways.
    Mtu {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// The new limit.
        mtu: usize,
    },
    /// The host stops: nothing in, nothing out.
    Crash {
        /// The host.
        host: String,
    },
    /// A crashed (or running) host starts again: same name, new UID; its allocator state
    /// survives (as in a state directory) unless `wipe`.
    Restart {
        /// The host.
        host: String,
        /// The allocator state is lost too.
        #[serde(default, skip_serializing_if = "is_false")]
        wipe: bool,
    },
    /// The host freezes; what arrives waits.
    Pause {
        /// The host.
        host: String,
    },
    /// A paused host runs again.
    Resume {
        /// The host.
        host: String,
    },
    /// The operator runs `weave rmpeer PEER` on `host`: it takes over the address space of
    /// `peer` (which must be gone for good).
    Rmpeer {
        /// Where it runs.
        host: String,
        /// The peer gone for good.
        peer: String,
    },
    /// A container moves (same MAC and addresses) to another host.
    Move {
        /// The container, as `host/cN`.
        container: String,
        /// The new host.
        to: String,
    },
}

/// Kinds of random faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Random two-way partition.
    Partition,
    /// Random one-way partition.
    OneWay,
    /// A link cut.
    Cut,
    /// A UDP block.
    UdpBlock,
    /// A crash then restart.
    Crash,
    /// A pause then resume.
    Pause,
    /// A container move.
    Move,
    /// A crash, then a restart with the allocator state lost.
    CrashWipe,
}

/// A random fault schedule: `count` faults between `start` and `end`, each undone within
/// `max_outage`; everything is healed by `end`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// First fault no earlier than this.
    pub start: Dur,
    /// Everything healed by this.
    pub end: Dur,
    /// How many faults.
    pub count: usize,
    /// Which kinds to draw from.
    pub kinds: Vec<FaultKind>,
    /// Longest outage of one fault.
    pub max_outage: Dur,
}

/// Containers and traffic.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Containers on each host.
    pub containers_per_host: usize,
    /// Subnets (CIDR); containers take them round-robin.
    pub subnets: Vec<String>,
    /// Each container pings a random container of its subnet this often (0: never).
    pub ping_interval: Dur,
    /// Each container sends a UDP datagram to a random container of its subnet this often.
    pub udp_interval: Dur,
    /// Each container broadcasts a UDP datagram this often.
    pub broadcast_interval: Dur,
    /// Each container also pings an address in another subnet this often (must never work).
    pub cross_subnet_interval: Dur,
    /// Bytes of each ping's Ethernet frame (at least the smallest echo request; 0: the
    /// smallest). Pings carry "don't fragment"; a container that is told a path is narrower
    /// sends its pings there smaller, as a kernel does.
    pub ping_size: usize,
    /// The fraction of containers that run the traffic above (spread evenly); the others only
    /// answer.
    pub active: f64,
    /// When the traffic above starts.
    pub start: Dur,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            containers_per_host: 1,
            subnets: vec!["10.32.0.0/16".into()],
            ping_interval: Dur(Duration::from_secs(1)),
            udp_interval: Dur(Duration::ZERO),
            broadcast_interval: Dur(Duration::ZERO),
            cross_subnet_interval: Dur(Duration::ZERO),
            ping_size: 0,
            active: 1.0,
            start: Dur(Duration::ZERO),
        }
    }
}

/// A scenario that could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML, or not this format (the message names line and key).
    #[error("{0}")]
    Parse(String),
    /// A value is out of range or names something that does not exist.
    #[error("{place}: {msg}")]
    Invalid {
        /// Where in the file, like `faults[2].host`.
        place: String,
        /// What is wrong.
        msg: String,
    },
}

impl Scenario {
    /// Parses and validates a scenario.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// The scenario as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("scenarios serialise")
    }

    /// Host names in index order.
    pub fn host_names(&self) -> Vec<String> {
        match (&self.hosts.names, self.hosts.count) {
            (Some(n), _) => n.clone(),
            (None, Some(c)) => (0..c).map(|i| format!("h{i}")).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// The index of container `host/cN` (validated names only), in the order containers are
    /// made: host by host, `containers_per_host` each.
    pub fn container_index(&self, name: &str) -> Option<usize> {
        let (h, c) = name.split_once('/')?;
        let host = self.host_names().iter().position(|n| n == h)?;
        let k: usize = c.strip_prefix('c')?.parse().ok()?;
        (k < self.workload.containers_per_host).then_some(host * self.workload.containers_per_host + k)
    }

    /// The link class by name (`default` exists even when not written).
    pub fn class(&self, name: &str) -> Option<LinkClass> {
        match self.link_classes.get(name) {
            Some(c) => Some(c.clone()),
            None if name == "default" => Some(LinkClass::default()),
            None => None,
        }
    }

    /// When the last fault happens (zero without faults).
    pub fn faults_end(&self) -> Duration {
        let timeline = self.faults.iter().map(|f| f.at.0).max().unwrap_or(Duration::ZERO);
        let random = self.random_faults.as_ref().map_or(Duration::ZERO, |r| r.end.0);
        let hostile = self.hostile.iter().map(|h| h.end.0).max().unwrap_or(Duration::ZERO);
        let late = self.hosts.start.values().map(|d| d.0).max().unwrap_or(Duration::ZERO);
        timeline.max(random).max(self.hosts.start_spread.0).max(hostile).max(late)
    }

    /// Gives every router a password unless the scenario already sets passwords: the same
    /// scenario, run with the PAKE handshake and sealed traffic.
    pub fn encrypt(&mut self) {
        if self.router.password.is_none() && self.router.passwords.is_empty() {
            self.router.password = Some("weave-sim".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"x\"\nduration = \"10s\"\n[hosts]\ncount = 2\n";

    #[test]
    fn minimal_scenarios_take_defaults() {
        let s = Scenario::parse(MINIMAL).unwrap();
        assert_eq!(s.host_names(), vec!["h0", "h1"]);
        assert_eq!(s.duration, Dur(Duration::from_secs(10)));
        assert_eq!(s.underlay.shape, Shape::FullMesh);
        assert!(s.checks.safety);
    }

    #[test]
    fn durations_parse_in_every_unit() {
        for (s, us) in [("250ms", 250_000), ("1.5s", 1_500_000), ("2m", 120_000_000), ("7us", 7), ("1h", 3_600_000_000)]
        {
            assert_eq!(s.parse::<Dur>().unwrap().0.as_micros(), us, "{s}");
        }
        assert!("10".parse::<Dur>().is_err());
        assert!("ten s".parse::<Dur>().is_err());
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let e = Scenario::parse(&format!("{MINIMAL}[underlay]\nshap = \"ring\"\n")).unwrap_err().to_string();
        assert!(e.contains("unknown field `shap`"), "{e}");
        assert!(e.contains("line 6"), "{e}");
    }

    #[test]
    fn bad_values_name_their_place() {
        let cases = [
            ("[[faults]]\nat = \"1s\"\naction = \"crash\"\nhost = \"h9\"\n", "faults[0].host: no host named `h9`"),
            ("[link_classes.default]\nloss = 1.5\n", "link_classes.default.loss"),
            ("[workload]\nsubnets = [\"10.0.0.0/33\"]\n", "workload.subnets[0]"),
            ("[workload]\nactive = 1.5\n", "workload.active"),
            ("[[faults]]\nat = \"1m\"\naction = \"heal\"\n", "faults[0].at: after the end"),
            ("[[faults]]\nat = \"1s\"\naction = \"explode\"\n", "unknown variant `explode`"),
            ("[router]\nudp_heartbeat = \"0s\"\n", "router: udp_heartbeat is 0ns"),
            ("[router]\nanti_entropy = \"0s\"\n", "router: anti_entropy is 0ns"),
            ("[router]\nhop_limit = 0\n", "router: hop_limit is 0"),
            ("[router]\nflood_rate = 0\n", "router: flood_rate is 0"),
            (
                "[[hostile]]\ncontainer = \"h0/c3\"\nkind = \"mac-flood\"\nrate = 10\nstart = \"1s\"\nend = \"2s\"\n",
                "hostile[0].container: no container `h0/c3`",
            ),
            (
                "[[hostile]]\ncontainer = \"h0/c0\"\nkind = \"spoof\"\nrate = 10\nstart = \"1s\"\nend = \"2s\"\n",
                "hostile[0].victim: spoof needs a victim",
            ),
            (
                "[[hostile]]\ncontainer = \"h0/c0\"\nkind = \"spoof\"\nvictim = \"h0/c0\"\nrate = 10\nstart = \"1s\"\nend = \"2s\"\n",
                "hostile[0].victim: a container cannot spoof itself",
            ),
            (
                "[[hostile]]\ncontainer = \"h0/c0\"\nkind = \"mac-flood\"\nrate = 0\nstart = \"1s\"\nend = \"2s\"\n",
                "hostile[0].rate",
            ),
            ("[checks]\n[[checks.during]]\nfrom = \"1s\"\nto = \"1m\"\npings_answered_min = 0.9\n", "checks.during[0]"),
            ("[checks]\nskip = [\"speed\"]\n", "checks.skip[0]: no check `speed`"),
            ("start = { h9 = \"1s\" }\n", "hosts.start.h9: no host named `h9`"),
            ("start = { h1 = \"1m\" }\n", "hosts.start.h1: after the end"),
            (
                "[[faults]]\nat = \"1s\"\naction = \"link-class\"\na = \"h0\"\nb = \"h1\"\nclass = \"fast\"\n",
                "faults[0].class: no link class `fast`",
            ),
            (
                "[[faults]]\nat = \"1s\"\naction = \"udp-block-one-way\"\nfrom = \"h0\"\nto = \"h7\"\n",
                "faults[0].to: no host named `h7`",
            ),
        ];
        for (extra, want) in cases {
            let e = Scenario::parse(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }

    #[test]
    fn unknown_fault_keys_are_refused() {
        let e = Scenario::parse(&format!(
            "{MINIMAL}[[faults]]\nat = \"1s\"\naction = \"crash\"\nhost = \"h0\"\nhots = 1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("hots"), "{e}");
    }

    #[test]
    fn scenarios_round_trip_through_toml() {
        let text = format!("{MINIMAL}[[faults]]\nat = \"1s\"\naction = \"cut\"\na = \"h0\"\nb = \"h1\"\n");
        let s = Scenario::parse(&text).unwrap();
        let again = Scenario::parse(&s.to_toml()).unwrap();
        assert_eq!(again.faults, s.faults);
    }
}
