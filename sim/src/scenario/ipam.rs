//! `[ipam]`: every router runs the address allocator, and abstract targets on each host ask
//! it for addresses.

use router_core::{Duration, IpamConfig};
use serde::{Deserialize, Serialize};

use super::{invalid, Dur, ScenarioError};

/// The allocator and its workload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    /// The range every router divides (`--ipalloc-range`).
    pub range: String,
    /// Where allocations without a subnet go (default: the whole range).
    #[serde(default)]
    pub default_subnet: Option<String>,
    /// How many peers start the network (default: every host of the scenario).
    #[serde(default)]
    pub init_peers: Option<usize>,
    /// Targets on each host that ask for an address whenever the host starts.
    #[serde(default = "two")]
    pub targets_per_host: u32,
    /// Every this often a random target of a random running host frees its address and a
    /// new one asks (0: never).
    #[serde(default)]
    pub churn_interval: Option<Dur>,
    /// How long an allocation waits for space (router default when left out).
    #[serde(default)]
    pub alloc_timeout: Option<Dur>,
    /// How long a want waits for the richest peer before any peer answers.
    #[serde(default)]
    pub donate_delay: Option<Dur>,
    /// How long an agreement round waits before a new ballot.
    #[serde(default)]
    pub paxos_retry: Option<Dur>,
    /// How long a peer stays unreachable before the voters reclaim the space it does not use
    /// (router default when left out; 0: automatic reclaim off).
    #[serde(default)]
    pub reclaim_after: Option<Dur>,
    /// Convergence also needs every target of every running host to hold an address (an
    /// allocation that failed is never asked again).
    #[serde(default)]
    pub all_served: bool,
    /// Act as the operator when a majority of the voters lost their state (wiped restarts):
    /// run `weave rmpeer` for each of them on the first running host.
    #[serde(default)]
    pub rmpeer_lost_voters: bool,
}

fn two() -> u32 {
    2
}

impl Ipam {
    /// The allocator's configuration for a scenario of `hosts` hosts.
    pub fn config(&self, hosts: usize) -> IpamConfig {
        let range = self.range.parse().expect("validated");
        let mut c = IpamConfig::new(range);
        if let Some(s) = &self.default_subnet {
            c.default_subnet = s.parse().expect("validated");
        }
        c.init_peers = self.init_peers.unwrap_or(hosts);
        // The simulator saves state as a state directory would, at once (see `world::ipam`).
        c.write_ahead = true;
        for (v, field) in [
            (self.alloc_timeout, &mut c.alloc_timeout),
            (self.donate_delay, &mut c.donate_delay),
            (self.paxos_retry, &mut c.paxos_retry),
        ] {
            if let Some(v) = v {
                *field = v.0;
            }
        }
        if let Some(r) = self.reclaim_after {
            c.reclaim_after = Some(r.0).filter(|d| !d.is_zero());
        }
        c
    }

    /// The churn period, if any.
    pub fn churn(&self) -> Option<Duration> {
        self.churn_interval.map(|d| d.0).filter(|d| !d.is_zero())
    }

    pub(super) fn validate(&self, hosts: usize) -> Result<(), ScenarioError> {
        if self.range.parse::<ipnet::Ipv4Net>().is_err() {
            return Err(invalid("ipam.range", "a CIDR such as 10.32.0.0/12"));
        }
        if let Some(s) = &self.default_subnet {
            if s.parse::<ipnet::Ipv4Net>().is_err() {
                return Err(invalid("ipam.default_subnet", "a CIDR inside the range"));
            }
        }
        if self.targets_per_host > 1000 {
            return Err(invalid("ipam.targets_per_host", "at most 1000"));
        }
        for (k, v) in [
            ("alloc_timeout", self.alloc_timeout),
            ("donate_delay", self.donate_delay),
            ("paxos_retry", self.paxos_retry),
        ] {
            if v.is_some_and(|d| d.0.is_zero()) {
                return Err(invalid(format!("ipam.{k}"), "must be positive"));
            }
        }
        self.config(hosts).validate().map_err(|e| invalid("ipam", e.to_string()))
    }
}
