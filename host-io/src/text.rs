//! Human-readable status, and Prometheus metrics, from the core's snapshot.

use std::fmt::Write;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use router_core::status::ConnState;
use router_core::{DropReason, Status};

fn nick(n: &Option<String>) -> String {
    n.as_deref().filter(|s| !s.is_empty()).map(|s| format!("({s})")).unwrap_or_default()
}

/// The overview `weave status` prints.
pub(crate) fn status(s: &Status, d: &crate::api::DaemonInfo, clock: &Clock) -> String {
    let established = s.connections.iter().filter(|c| c.state == ConnState::Established).count();
    let reachable = s.peers.iter().filter(|p| p.reachable).count();
    let mut o = String::new();
    let _ = writeln!(o, "        Version: {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(o, "        Service: router");
    let _ = writeln!(o, "       Protocol: weave 1..1");
    let _ = writeln!(o, "           Name: {}{}", s.name, nick(&Some(s.nickname.clone())));
    let enc = if s.encryption { "enabled (SPAKE2 password, ChaCha20-Poly1305)" } else { "disabled" };
    let _ = writeln!(o, "     Encryption: {enc}");
    let _ = writeln!(o, "      Data path: {}", d.data_path);
    let _ = writeln!(o, "            MTU: {} (bridge {} and containers)", d.mtu, d.bridge);
    let _ = writeln!(o, "        Started: {}", humantime::format_rfc3339_seconds(clock.start));
    let _ = writeln!(o, "        Targets: {}", s.targets.iter().filter(|t| !t.discovered).count());
    let _ = writeln!(o, "    Connections: {} ({} established)", s.connections.len(), established);
    let _ = writeln!(o, "          Peers: {} ({} reachable)", s.peers.len(), reachable);
    let _ = writeln!(o, "      MAC table: {} entries", s.macs.len());
    if let Some(i) = &s.ipam {
        let _ = writeln!(o, "      Addresses: {}", ipam_summary(i));
    }
    o
}

fn ipam_summary(i: &router_core::ipam::IpamStatus) -> String {
    let ring = match i.creator {
        Some(_) => format!("{} leased here", i.leases.len()),
        None => format!("waiting for {} of the starting peers to agree ({} heard)", i.quorum, i.votes),
    };
    format!("range {} (default subnet {}), {ring}", i.range, i.default_subnet)
}

/// `weave status ipam`: the ring, every owner's space, our leases and what waits.
pub(crate) fn ipam(s: &Status) -> String {
    let Some(i) = &s.ipam else {
        return "The address allocator is off (launched with --ipalloc-range \"\").\n".into();
    };
    let nick_of = |o: &router_core::ipam::Owner| {
        s.peers.iter().find(|p| p.name == o.name).map(|p| nick(&Some(p.nickname.clone()))).unwrap_or_default()
    };
    let mut o = String::new();
    let _ = writeln!(o, "Range: {}   default subnet: {}", i.range, i.default_subnet);
    match i.creator {
        Some(c) => {
            let _ = writeln!(o, "Ring: agreed, created by {c}{}", nick_of(&c));
        }
        None => {
            let _ = writeln!(
                o,
                "Ring: not yet agreed: {} vote(s) heard, {} needed (a majority of the peers named at launch)",
                i.votes, i.quorum
            );
        }
    }
    if i.creator.is_some() {
        let voters: Vec<String> = i.voters.iter().map(|v| format!("{v}{}", nick_of(v))).collect();
        let _ = writeln!(o, "Voters: {} (decision {})", voters.join(", "), i.slot);
        if i.quorum_lost {
            let _ = writeln!(
                o,
                "  A majority of the voters lost their state: no new block can be put to use. Run `weave rmpeer NAME` on one peer for each voter that is gone."
            );
        }
        let _ = match i.reclaim_after {
            Some(g) => writeln!(
                o,
                "Reclaim: the unused space of a peer unreachable for {} returns to the living (blocks in use stay its own)",
                humantime::format_duration(g)
            ),
            None => writeln!(o, "Reclaim: automatic reclaim is off; `weave rmpeer NAME` takes a gone peer's space"),
        };
    }
    let _ = writeln!(o, "Owners:");
    for w in &i.owners {
        let me = if w.owner == i.me { " (this peer)" } else { "" };
        let reach = match (w.reachable, w.reclaim_in) {
            (true, _) => "reachable".to_string(),
            (false, Some(d)) if d.is_zero() && w.blocks == w.active => {
                "gone: its blocks in use stay its own until `weave rmpeer`".to_string()
            }
            (false, Some(d)) if d.is_zero() => "gone: its unused space is being reclaimed".to_string(),
            (false, Some(d)) => format!(
                "unreachable: its unused space is reclaimed in {}",
                humantime::format_duration(core::time::Duration::from_secs(d.as_secs()))
            ),
            (false, None) => "unreachable: its space stays its own until it is back or `weave rmpeer`".to_string(),
        };
        let free = w.free.map_or("?".to_string(), |f| f.to_string());
        let want = w.want.map(|n| format!(", wants space in {n}")).unwrap_or_default();
        let _ = writeln!(
            o,
            "  {}{}{me}: {} blocks ({} in use), {} addresses, {free} free, {reach}{want}",
            w.owner,
            nick_of(&w.owner),
            w.blocks,
            w.active,
            w.addresses
        );
        if !w.ranges.is_empty() {
            let shown: Vec<String> = w.ranges.iter().take(4).map(|(a, b)| format!("{a}-{b}")).collect();
            let more = if w.ranges.len() > 4 { format!(" and {} more", w.ranges.len() - 4) } else { String::new() };
            let _ = writeln!(o, "    {}{more}", shown.join(", "));
        }
    }
    let _ = writeln!(o, "Leased here: {}", i.leases.len());
    for (a, l) in &i.leases {
        let _ = writeln!(o, "  {a}/{} {}", l.subnet.prefix_len(), l.target);
    }
    for (t, n) in &i.pending {
        let _ = writeln!(o, "Waiting for space: {t} in {n}");
    }
    for f in &i.foreign {
        let who = f.creator.map_or("a group still agreeing".to_string(), |c| format!("a ring created by {c}"));
        let _ = writeln!(
            o,
            "Another ring met: {who} over {}; the two are never merged. Reset one side (`weave reset`) and launch it again with a peer of the other.",
            f.range
        );
    }
    o
}

/// One line per peer: name, nickname, reachability, and its established links.
pub(crate) fn peers(s: &Status) -> String {
    let mut o = String::new();
    for p in &s.peers {
        let _ = writeln!(
            o,
            "{}{:<14} {:<11} links: {}",
            p.name,
            nick(&Some(p.nickname.clone())),
            if p.name == s.name {
                "self"
            } else if p.reachable {
                "reachable"
            } else {
                "unreachable"
            },
            p.conns.iter().map(|c| c.peer.to_string()).collect::<Vec<_>>().join(" ")
        );
    }
    o
}

/// One line per connection, aligned, with the state and reason.
/// The wall-clock time of router instants: the router counts from its start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// When the router's time was zero.
    pub(crate) start: std::time::SystemTime,
}

impl Clock {
    /// `at` as an RFC 3339 time (UTC, milliseconds).
    pub(crate) fn at(&self, at: router_core::Instant) -> String {
        let t = self.start + std::time::Duration::from_micros(at.as_micros());
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// A report (`Status` as JSON) with every router instant (microseconds since the
    /// router started, under the keys in [`INSTANT_KEYS`]) given as an RFC 3339 time, and
    /// the router's start time added.
    pub(crate) fn report(&self, s: &Status) -> serde_json::Value {
        fn walk(c: &Clock, v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m.iter_mut() {
                        match x.as_u64() {
                            Some(n) if INSTANT_KEYS.contains(&k.as_str()) => {
                                *x = c.at(router_core::Instant::from_micros(n)).into();
                            }
                            _ => walk(c, x),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(c, x)),
                _ => {}
            }
        }
        let mut v = serde_json::to_value(s).unwrap_or_default();
        walk(self, &mut v);
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("started".into(), humantime::format_rfc3339_millis(self.start).to_string().into());
        }
        v
    }
}

/// The fields of `router_core::Status` (and what it holds) that are router instants.
const INSTANT_KEYS: [&str; 6] = ["now", "at", "last_seen", "opened_at", "established_since", "probing_since"];

pub(crate) fn connections(s: &Status, clock: &Clock) -> String {
    let mut o = String::new();
    for c in &s.connections {
        let dir = if c.outbound { "->" } else { "<-" };
        let peer = c.peer.map(|p| format!("{p}{}", nick(&c.nickname))).unwrap_or_default();
        let udp = match (c.udp_rx_ok, c.udp_tx_ok) {
            (true, true) => "udp ok",
            (true, false) => "udp: no acks from peer",
            (false, true) => "udp: nothing from peer",
            (false, false) => "udp: none yet",
        };
        let change = c
            .link_changes
            .last()
            .map(|l| {
                format!("  (link {} at {}: {})", if l.established { "up" } else { "down" }, clock.at(l.at), l.reason)
            })
            .unwrap_or_default();
        let sealed = if c.encrypted { ", encrypted" } else { "" };
        // The path MTU as an IP packet size (the UDP payload it carries, and 28 bytes of
        // headers), marked when the search has not settled.
        let pmtu = if c.state == ConnState::Established {
            format!(", pmtu {}{}", usize::from(c.pmtu) + 28, if c.pmtu_verified { "" } else { "?" })
        } else {
            String::new()
        };
        let _ =
            writeln!(o, "{dir} {:<22} {:<13} {:<32} {udp}{sealed}{pmtu}{change}", c.remote.to_string(), c.state, peer);
    }
    for f in &s.recent_failures {
        let _ = writeln!(
            o,
            "-> {:<22} {:<13} {:<32} at {}: {}",
            f.remote.to_string(),
            "failed",
            f.peer.map(|p| p.to_string()).unwrap_or_default(),
            clock.at(f.at),
            f.reason
        );
    }
    o
}

/// One line per target address.
/// Peers given by name that do not resolve yet (name → attempts, last error), as lines of
/// `status targets`.
pub(crate) fn unresolved(names: &std::collections::BTreeMap<String, (u32, String)>) -> String {
    let mut o = String::new();
    for (name, (attempts, error)) in names {
        let _ = writeln!(o, "{:<22} {:<10} {:<10} attempts {:<3} {}", name, "unresolved", "given", attempts, error);
    }
    o
}

pub(crate) fn targets(s: &Status) -> String {
    let mut o = String::new();
    for t in &s.targets {
        let state = if t.is_self {
            "self"
        } else if t.connected {
            "connected"
        } else if t.conn.is_some() {
            "connecting"
        } else {
            "retrying"
        };
        let _ = writeln!(
            o,
            "{:<22} {:<10} {:<10} attempts {:<3} {}",
            t.addr.to_string(),
            state,
            if t.discovered { "discovered" } else { "given" },
            t.attempts,
            t.last_error.as_deref().unwrap_or("")
        );
    }
    o
}

/// Labels of one sample: a few fixed names with values from a fixed set.
type Labels = Vec<(&'static str, &'static str)>;

/// A counter family registered under `name` (its samples are `name_total`).
fn counters(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

/// The snapshot's counters and gauges in the OpenMetrics text format (which Prometheus reads);
/// serve it as [`METRICS_CONTENT_TYPE`].
pub(crate) fn metrics(s: &Status, bridge: &crate::capture::BridgeCounters) -> String {
    let st = &s.stats;
    let mut reg = Registry::default();
    let conns = Family::<Labels, Gauge>::default();
    reg.register("weave_connections", "Control connections by state", conns.clone());
    for state in ConnState::ALL {
        let n = s.connections.iter().filter(|c| c.state == state).count();
        conns.get_or_create(&vec![("state", state.as_str())]).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let peers = Gauge::<i64>::default();
    peers.set(i64::try_from(s.peers.len()).unwrap_or(i64::MAX));
    reg.register("weave_peers", "Peers in the topology", peers);
    let frames = counters(&mut reg, "weave_frames", "Frames by what happened to them");
    for (k, v) in [
        ("captured", st.frames_captured),
        ("injected", st.frames_injected),
        ("sent", st.frames_sent),
        ("flooded", st.frames_flooded),
        ("relayed", st.frames_relayed),
        ("local", st.frames_local),
    ] {
        frames.get_or_create(&vec![("event", k)]).inc_by(v);
    }
    let bytes = counters(&mut reg, "weave_bytes", "Bytes by direction and plane");
    for (d, p, v) in [
        ("out", "udp", st.udp_bytes_sent),
        ("in", "udp", st.udp_bytes_received),
        ("out", "tcp", st.tcp_bytes_sent),
        ("in", "tcp", st.tcp_bytes_received),
    ] {
        bytes.get_or_create(&vec![("direction", d), ("plane", p)]).inc_by(v);
    }
    let links = counters(&mut reg, "weave_link_changes", "Links established, and lost by reason");
    for (k, v) in [
        ("established", st.links_established),
        ("lost_probe_timeout", st.links_lost_probe),
        ("lost_heartbeat_timeout", st.links_lost_heartbeat),
        ("lost_ack_timeout", st.links_lost_ack),
    ] {
        links.get_or_create(&vec![("change", k)]).inc_by(v);
    }
    let macs = counters(&mut reg, "weave_macs", "MAC table: addresses learned, moved, and refused by a full share");
    for (k, v) in [("learned", st.macs_learned), ("moved", st.macs_moved), ("refused", st.macs_refused)] {
        macs.get_or_create(&vec![("event", k)]).inc_by(v);
    }
    let drops = counters(&mut reg, "weave_drops", "Dropped frames or datagrams by reason");
    for r in DropReason::ALL {
        drops.get_or_create(&vec![("reason", r.as_str())]).inc_by(st.drops.get(r));
    }
    let pmtus = Family::<Vec<(&'static str, String)>, Gauge>::default();
    reg.register(
        "weave_path_mtu_bytes",
        "Path MTU towards each established peer (IP packet bytes; verified by probes or not)",
        pmtus.clone(),
    );
    for c in s.connections.iter().filter(|c| c.state == ConnState::Established) {
        let peer = c.peer.map(|p| p.to_string()).unwrap_or_default();
        let verified = if c.pmtu_verified { "true" } else { "false" }.to_string();
        pmtus.get_or_create(&vec![("peer", peer), ("verified", verified)]).set(i64::from(c.pmtu) + 28);
    }
    let pmtu_counters =
        counters(&mut reg, "weave_path_mtu_events", "Path MTU probes sent, and smaller path MTUs the kernel reported");
    pmtu_counters.get_or_create(&vec![("event", "probe_sent")]).inc_by(st.pmtu_probes_sent);
    pmtu_counters.get_or_create(&vec![("event", "kernel_report")]).inc_by(st.pmtu_reports);
    let too_big = counters(&mut reg, "weave_frames_too_big", "Frames too big for their path, by what was done");
    too_big.get_or_create(&vec![("action", "icmp_sent")]).inc_by(st.icmp_too_big_sent);
    too_big.get_or_create(&vec![("action", "fragmented")]).inc_by(st.frames_fragmented);
    let port =
        counters(&mut reg, "weave_bridge_port", "Frames at the bridge port, by what the data path did with them");
    for (k, v) in bridge.snapshot() {
        port.get_or_create(&vec![("event", k)]).inc_by(v);
    }
    if let Some(i) = &s.ipam {
        let addrs = Family::<Vec<(&'static str, String)>, Gauge>::default();
        reg.register(
            "weave_ipam_addresses",
            "Addresses of the allocation range per owner: owned, and free as the owner last published",
            addrs.clone(),
        );
        for w in &i.owners {
            let peer = w.owner.name.to_string();
            addrs.get_or_create(&vec![("peer", peer.clone()), ("state", "owned".into())]).set(w.addresses as i64);
            if let Some(f) = w.free {
                addrs.get_or_create(&vec![("peer", peer), ("state", "free".into())]).set(i64::from(f));
            }
        }
        let leased = Gauge::<i64>::default();
        leased.set(i.leases.len() as i64);
        reg.register("weave_ipam_leased", "Addresses this peer has handed out", leased);
        let ev = counters(&mut reg, "weave_ipam", "Allocator events");
        for (k, v) in [
            ("allocated", i.stats.allocated),
            ("freed", i.stats.freed),
            ("blocks_given", i.stats.blocks_given),
            ("blocks_received", i.stats.blocks_received),
            ("blocks_reclaimed", i.stats.blocks_reclaimed),
            ("foreign_update", i.stats.foreign_updates),
            ("conflict", i.stats.conflicts),
        ] {
            ev.get_or_create(&vec![("event", k)]).inc_by(v);
        }
    }
    let mismatches = Counter::<u64>::default();
    mismatches.inc_by(st.password_mismatches);
    reg.register(
        "weave_password_mismatches",
        "Handshakes refused because the passwords differ or one side has none",
        mismatches,
    );
    let mut o = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut o, &reg);
    o
}

/// The content type of [`prometheus_text`].
pub(crate) const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text (as [`metrics`] writes it) in Prometheus' text format 0.0.4: a counter
/// family is named as its samples are (`_total`), and there is no `# EOF`.
pub(crate) fn prometheus_text(open: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .filter(|n| !n.ends_with("_total"))
        .collect();
    let mut o = String::with_capacity(open.len());
    for l in open.lines() {
        if l == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        o.push_str(renamed.as_deref().unwrap_or(l));
        o.push('\n');
    }
    o
}

/// The content type of [`metrics`].
pub(crate) const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_times_are_wall_clock_times() {
        use router_core::{Config, Instant, Router};
        let mut r = Router::new(Instant::ZERO, Config::new("02:00:00:00:00:01".parse().unwrap())).unwrap();
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x88, 0xb5]);
        frame.resize(60, 0);
        r.handle_frame(Instant::from_micros(250_000), &frame);
        let clock = Clock { start: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000) };
        let v = clock.report(&r.status(Instant::from_micros(1_500_000)));
        assert_eq!(v["now"], "2027-01-15T08:00:01.500Z");
        assert_eq!(v["started"], "2027-01-15T08:00:00.000Z");
        assert_eq!(v["macs"][0]["last_seen"], "2027-01-15T08:00:00.250Z", "{v}");
    }

    #[test]
    fn metrics_name_every_state_and_reason_with_their_values() {
        let name = "02:00:00:00:00:01".parse().unwrap();
        let mut s = router_core::Router::new(router_core::Instant::ZERO, router_core::Config::new(name))
            .unwrap()
            .status(router_core::Instant::ZERO);
        s.stats.frames_relayed = 7;
        s.stats.password_mismatches = 2;
        let m = metrics(&s, &Default::default());
        assert!(m.contains("# TYPE weave_connections gauge"), "{m}");
        for state in ConnState::ALL {
            assert!(m.contains(&format!("weave_connections{{state=\"{state}\"}} 0")), "{m}");
        }
        assert!(m.contains("weave_frames_total{event=\"relayed\"} 7"), "{m}");
        assert!(m.contains("weave_password_mismatches_total 2"), "{m}");
        for r in DropReason::ALL {
            assert!(m.contains(&format!("weave_drops_total{{reason=\"{}\"}} 0", r.as_str())), "{m}");
        }
        assert!(m.ends_with("# EOF\n"), "{m}");
        let p = prometheus_text(&m);
        assert!(p.contains("# TYPE weave_frames_total counter\n"), "{p}");
        assert!(p.contains("# HELP weave_frames_total "), "{p}");
        assert!(p.contains("# TYPE weave_connections gauge\n"), "gauges keep their names: {p}");
        assert!(!p.contains("# EOF"), "{p}");
    }
}
