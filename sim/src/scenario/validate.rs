//! Checks of a parsed scenario that serde's types cannot express: names that must exist,
//! numbers in range, faults in order. Each refusal names its place in the file.

use router_core::Config;

use super::*;

impl RouterSettings {
    /// Puts these settings into a router's configuration (what is left out keeps the
    /// router's default).
    pub fn apply(&self, c: &mut Config) {
        c.discovery = self.discovery;
        c.lazy_routes = self.lazy_routes;
        let durations = [
            (self.udp_heartbeat, &mut c.udp_heartbeat),
            (self.udp_timeout, &mut c.udp_timeout),
            (self.tcp_heartbeat, &mut c.tcp_heartbeat),
            (self.tcp_timeout, &mut c.tcp_timeout),
            (self.anti_entropy, &mut c.anti_entropy),
            (self.gossip_coalesce, &mut c.gossip_coalesce),
            (self.gossip_delay_max, &mut c.gossip_delay_max),
            (self.backoff_min, &mut c.backoff_min),
            (self.backoff_max, &mut c.backoff_max),
            (self.mac_expiry, &mut c.mac_expiry),
        ];
        for (v, field) in durations {
            if let Some(v) = v {
                *field = v.0;
            }
        }
        if let Some(v) = self.hop_limit {
            c.hop_limit = v;
        }
        if let Some(v) = self.conn_limit {
            c.conn_limit = v;
        }
        if let Some(v) = self.flood_rate {
            c.flood_rate = v;
        }
        if let Some(v) = self.flood_rate_total {
            c.flood_rate_total = v;
        }
    }
}

impl Scenario {
    pub(super) fn validate(&self) -> Result<(), ScenarioError> {
        let names = self.host_names();
        match (&self.hosts.names, self.hosts.count) {
            (Some(_), Some(_)) => return Err(invalid("hosts", "give either `count` or `names`, not both")),
            (None, None) => return Err(invalid("hosts", "give `count` or `names`")),
            _ => {}
        }
        if names.is_empty() || names.len() > 100_000 {
            return Err(invalid("hosts", "between 1 and 100000 hosts"));
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(invalid("hosts.names", "host names must be unique"));
        }
        let host = |place: String, n: &str| -> Result<(), ScenarioError> {
            if names.iter().any(|h| h == n) {
                Ok(())
            } else {
                Err(invalid(place, format!("no host named `{n}`")))
            }
        };
        if self.duration.0.is_zero() {
            return Err(invalid("duration", "must be positive"));
        }
        if self.router.password.as_deref() == Some("") {
            return Err(invalid("router.password", "must not be empty (leave it out for no password)"));
        }
        for n in self.router.passwords.keys() {
            host(format!("router.passwords.{n}"), n)?;
        }
        for (i, [a, b]) in self.underlay.links.iter().enumerate() {
            host(format!("underlay.links[{i}]"), a)?;
            host(format!("underlay.links[{i}]"), b)?;
        }
        if self.underlay.shape == Shape::Random && self.underlay.degree < 1 {
            return Err(invalid("underlay.degree", "must be at least 1"));
        }
        if self.class(&self.underlay.class).is_none() {
            return Err(invalid("underlay.class", format!("no link class `{}`", self.underlay.class)));
        }
        for (name, c) in &self.link_classes {
            let place = format!("link_classes.{name}");
            for (k, p) in [
                ("loss", c.loss),
                ("burst_enter", c.burst_enter),
                ("burst_exit", c.burst_exit),
                ("burst_loss", c.burst_loss),
                ("duplicate", c.duplicate),
                ("reorder", c.reorder),
            ] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(invalid(format!("{place}.{k}"), "a probability between 0 and 1"));
                }
            }
            if c.mtu < 100 || c.mtu > 65_507 {
                return Err(invalid(format!("{place}.mtu"), "between 100 and 65507"));
            }
            if c.bandwidth_mbps < 0.0 || !c.bandwidth_mbps.is_finite() {
                return Err(invalid(format!("{place}.bandwidth_mbps"), "zero (unlimited) or positive"));
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            host(format!("links[{i}].a"), &l.a)?;
            host(format!("links[{i}].b"), &l.b)?;
            if self.class(&l.class).is_none() {
                return Err(invalid(format!("links[{i}].class"), format!("no link class `{}`", l.class)));
            }
        }
        for (h, peers) in &self.router.peers {
            host(format!("router.peers.{h}"), h)?;
            for p in peers {
                host(format!("router.peers.{h}"), p)?;
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            let place = |k: &str| format!("faults[{i}].{k}");
            if f.at.0 > self.duration.0 {
                return Err(invalid(place("at"), "after the end of the scenario"));
            }
            match &f.action {
                FaultAction::Partition { groups } => {
                    for g in groups {
                        for h in g {
                            host(place("groups"), h)?;
                        }
                    }
                }
                FaultAction::OneWay { from, to } => {
                    for h in from {
                        host(place("from"), h)?;
                    }
                    for h in to {
                        host(place("to"), h)?;
                    }
                }
                FaultAction::Heal => {}
                FaultAction::Mtu { a, b, mtu } => {
                    host(place("a"), a)?;
                    host(place("b"), b)?;
                    if !(548..=65_507).contains(mtu) {
                        return Err(invalid(place("mtu"), "between 548 and 65507 bytes"));
                    }
                }
                FaultAction::UdpBlockOneWay { from, to } => {
                    host(place("from"), from)?;
                    host(place("to"), to)?;
                }
                FaultAction::LinkClass { a, b, class } => {
                    host(place("a"), a)?;
                    host(place("b"), b)?;
                    if self.class(class).is_none() {
                        return Err(invalid(place("class"), format!("no link class `{class}`")));
                    }
                }
                FaultAction::Cut { a, b }
                | FaultAction::Repair { a, b }
                | FaultAction::UdpBlock { a, b }
                | FaultAction::UdpUnblock { a, b } => {
                    host(place("a"), a)?;
                    host(place("b"), b)?;
                }
                FaultAction::Crash { host: h }
                | FaultAction::Restart { host: h, .. }
                | FaultAction::Pause { host: h }
                | FaultAction::Resume { host: h } => host(place("host"), h)?,
                FaultAction::Rmpeer { host: h, peer } => {
                    host(place("host"), h)?;
                    host(place("peer"), peer)?;
                    if self.ipam.is_none() {
                        return Err(invalid(place("action"), "rmpeer needs an [ipam] section"));
                    }
                }
                FaultAction::Move { container, to } => {
                    host(place("to"), to)?;
                    let Some((h, c)) = container.split_once('/') else {
                        return Err(invalid(place("container"), "write containers as host/cN, like h0/c0"));
                    };
                    host(place("container"), h)?;
                    let n: usize = c
                        .strip_prefix('c')
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| invalid(place("container"), "write containers as host/cN, like h0/c0"))?;
                    if n >= self.workload.containers_per_host {
                        return Err(invalid(
                            place("container"),
                            format!("{h} has {} containers", self.workload.containers_per_host),
                        ));
                    }
                }
            }
        }
        if let Some(r) = &self.random_faults {
            if r.start.0 > r.end.0 || r.end.0 > self.duration.0 {
                return Err(invalid("random_faults", "need start <= end <= duration"));
            }
            if r.kinds.is_empty() && r.count > 0 {
                return Err(invalid("random_faults.kinds", "list at least one kind"));
            }
        }
        let mut total = 0u64;
        for (i, s) in self.workload.subnets.iter().enumerate() {
            let Some(sn) = Subnet::parse(s) else {
                return Err(invalid(
                    format!("workload.subnets[{i}]"),
                    format!("`{s}` is not an IPv4 CIDR with a /8 to /30 prefix"),
                ));
            };
            total += u64::from(sn.capacity());
        }
        let containers = (names.len() * self.workload.containers_per_host) as u64;
        if containers > 0 && self.workload.subnets.is_empty() {
            return Err(invalid("workload.subnets", "containers need at least one subnet"));
        }
        if containers > total {
            return Err(invalid("workload.subnets", format!("{containers} containers do not fit")));
        }
        let container = |place: String, n: &str| -> Result<usize, ScenarioError> {
            self.container_index(n).ok_or_else(|| {
                invalid(
                    place,
                    format!("no container `{n}`: write host/cN with N below {}", self.workload.containers_per_host),
                )
            })
        };
        for (i, h) in self.hostile.iter().enumerate() {
            let place = |k: &str| format!("hostile[{i}].{k}");
            let me = container(place("container"), &h.container)?;
            match (h.kind, &h.victim) {
                (HostileKind::Spoof, Some(v)) => {
                    if container(place("victim"), v)? == me {
                        return Err(invalid(place("victim"), "a container cannot spoof itself"));
                    }
                }
                (HostileKind::Spoof, None) => return Err(invalid(place("victim"), "spoof needs a victim")),
                (_, Some(_)) => return Err(invalid(place("victim"), "only spoof has a victim")),
                (_, None) => {}
            }
            if !(1..=1_000_000).contains(&h.rate) {
                return Err(invalid(place("rate"), "between 1 and 1000000 frames per second"));
            }
            if h.start.0 >= h.end.0 || h.end.0 > self.duration.0 {
                return Err(invalid(place("end"), "need start < end <= duration"));
            }
        }
        for (h, at) in &self.hosts.start {
            host(format!("hosts.start.{h}"), h)?;
            if at.0 > self.duration.0 {
                return Err(invalid(format!("hosts.start.{h}"), "after the end of the scenario"));
            }
        }
        for (i, l) in self.checks.link_changes.iter().enumerate() {
            host(format!("checks.link_changes[{i}].a"), &l.a)?;
            host(format!("checks.link_changes[{i}].b"), &l.b)?;
            if l.to.is_some_and(|t| t.0 < l.from.0) {
                return Err(invalid(format!("checks.link_changes[{i}]"), "need from <= to"));
            }
        }
        for (i, c) in self.checks.skip.iter().enumerate() {
            if !["safety", "converge", "ping"].contains(&c.as_str()) {
                return Err(invalid(format!("checks.skip[{i}]"), format!("no check `{c}`: safety, converge or ping")));
            }
        }
        for (i, w) in self.checks.during.iter().enumerate() {
            if w.from.0 >= w.to.0 || w.to.0 + Duration::from_secs(1) > self.duration.0 {
                return Err(invalid(
                    format!("checks.during[{i}]"),
                    "need from < to, and to at least 1s before the end (answers get a second)",
                ));
            }
            if !(0.0..=1.0).contains(&w.pings_answered_min) {
                return Err(invalid(format!("checks.during[{i}].pings_answered_min"), "a fraction from 0 to 1"));
            }
        }
        if !(0.0..=1.0).contains(&self.workload.active) {
            return Err(invalid("workload.active", "a fraction from 0 to 1"));
        }
        // The router settings, as every router of the run would get them.
        let mut c = Config::new(router_core::PeerName::from_u64(0x0200_0000_0001));
        self.router.apply(&mut c);
        c.validate().map_err(|e| invalid("router", e.to_string()))?;
        if let Some(ipam) = &self.ipam {
            ipam.validate(names.len())?;
        }
        Ok(())
    }
}

pub(super) fn invalid(place: impl Into<String>, msg: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid { place: place.into(), msg: msg.into() }
}
