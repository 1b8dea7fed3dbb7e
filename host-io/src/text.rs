//! Human-readable status, and Prometheus metrics, from the core's snapshot.

use std::fmt::Write;

use router_core::{DropReason, Status};

fn nick(n: &Option<String>) -> String {
    n.as_deref().filter(|s| !s.is_empty()).map(|s| format!("({s})")).unwrap_or_default()
}

/// The overview `weave status` prints.
pub(crate) fn status(s: &Status) -> String {
    let established = s.connections.iter().filter(|c| c.state == "established").count();
    let reachable = s.peers.iter().filter(|p| p.reachable).count();
    let mut o = String::new();
    let _ = writeln!(o, "        Version: {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(o, "        Service: router");
    let _ = writeln!(o, "       Protocol: weave 1..1");
    let _ = writeln!(o, "           Name: {}{}", s.name, nick(&Some(s.nickname.clone())));
    let enc = if s.encryption { "enabled (SPAKE2 password, ChaCha20-Poly1305)" } else { "disabled" };
    let _ = writeln!(o, "     Encryption: {enc}");
    let _ = writeln!(o, "        Targets: {}", s.targets.iter().filter(|t| !t.discovered).count());
    let _ = writeln!(o, "    Connections: {} ({} established)", s.connections.len(), established);
    let _ = writeln!(o, "          Peers: {} ({} reachable)", s.peers.len(), reachable);
    let _ = writeln!(o, "      MAC table: {} entries", s.macs.len());
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
pub(crate) fn connections(s: &Status) -> String {
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
            .map(|l| format!("  (link {} at {}: {})", if l.established { "up" } else { "down" }, l.at, l.reason))
            .unwrap_or_default();
        let sealed = if c.encrypted { ", encrypted" } else { "" };
        let _ = writeln!(o, "{dir} {:<22} {:<13} {:<32} {udp}{sealed}{change}", c.remote.to_string(), c.state, peer);
    }
    for f in &s.recent_failures {
        let _ = writeln!(
            o,
            "-> {:<22} {:<13} {:<32} at {}: {}",
            f.remote.to_string(),
            "failed",
            f.peer.map(|p| p.to_string()).unwrap_or_default(),
            f.at,
            f.reason
        );
    }
    o
}

/// One line per target address.
pub(crate) fn targets(s: &Status) -> String {
    let mut o = String::new();
    for t in &s.targets {
        let state = if t.is_self {
            "self"
        } else if t.conn.is_some() {
            "connected"
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

/// Prometheus text exposition.
pub(crate) fn metrics(s: &Status) -> String {
    let mut o = String::new();
    let st = &s.stats;
    let _ = writeln!(o, "# HELP weave_connections Control connections by state.\n# TYPE weave_connections gauge");
    for state in ["connecting", "handshaking", "awaiting-udp", "established", "duplicate"] {
        let n = s.connections.iter().filter(|c| c.state == state).count();
        let _ = writeln!(o, "weave_connections{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP weave_peers Peers in the topology.\n# TYPE weave_peers gauge\nweave_peers {}",
        s.peers.len()
    );
    let _ =
        writeln!(o, "# HELP weave_frames_total Frames by what happened to them.\n# TYPE weave_frames_total counter");
    for (k, v) in [
        ("captured", st.frames_captured),
        ("injected", st.frames_injected),
        ("sent", st.frames_sent),
        ("flooded", st.frames_flooded),
        ("relayed", st.frames_relayed),
        ("local", st.frames_local),
    ] {
        let _ = writeln!(o, "weave_frames_total{{event=\"{k}\"}} {v}");
    }
    let _ = writeln!(o, "# HELP weave_bytes_total Bytes by direction and plane.\n# TYPE weave_bytes_total counter");
    for (d, p, v) in [
        ("out", "udp", st.udp_bytes_sent),
        ("in", "udp", st.udp_bytes_received),
        ("out", "tcp", st.tcp_bytes_sent),
        ("in", "tcp", st.tcp_bytes_received),
    ] {
        let _ = writeln!(o, "weave_bytes_total{{direction=\"{d}\",plane=\"{p}\"}} {v}");
    }
    let _ = writeln!(o, "# HELP weave_link_changes_total Links established, and lost by reason.\n# TYPE weave_link_changes_total counter");
    for (k, v) in [
        ("established", st.links_established),
        ("lost_probe_timeout", st.links_lost_probe),
        ("lost_heartbeat_timeout", st.links_lost_heartbeat),
        ("lost_ack_timeout", st.links_lost_ack),
    ] {
        let _ = writeln!(o, "weave_link_changes_total{{change=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP weave_drops_total Dropped frames or datagrams by reason.\n# TYPE weave_drops_total counter"
    );
    for r in DropReason::ALL {
        let _ = writeln!(o, "weave_drops_total{{reason=\"{}\"}} {}", r.as_str(), st.drops.get(r));
    }
    let _ = writeln!(
        o,
        "# HELP weave_password_mismatches_total Handshakes refused because the passwords differ or one side has none.\n\
         # TYPE weave_password_mismatches_total counter\nweave_password_mismatches_total {}",
        st.password_mismatches
    );
    o
}
