//! Path MTU on real namespace hosts: two hosts joined through a router namespace whose second
//! leg is narrower (1,280 bytes), and two hosts on a jumbo (9,000-byte) underlay. The overlay
//! never leans on the underlay fragmenting: containers learn the path's limit from ICMP, large
//! transfers complete both ways, and no host's IP fragment counter moves.
//!
//! Needs root (CI runs as root).

mod common;

use std::time::Duration;

use common::*;

const SETTLE: Duration = Duration::from_secs(15);

/// A kernel counter of a namespace (`nstat -az`), e.g. `IpFragCreates`.
fn counter(ns: &str, name: &str) -> u64 {
    let out = ok(&["ip", "netns", "exec", ns, "nstat", "-az", name]);
    out.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next().and_then(|v| v.parse().ok())).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// One `ping -M do` (don't fragment) of `size` payload bytes; its output.
fn df_ping(container: &str, ip: &str, size: usize) -> std::process::Output {
    let s = size.to_string();
    sh(&["ip", "netns", "exec", container, "ping", "-M", "do", "-c", "1", "-W", "2", "-s", &s, ip])
}

#[test]
fn a_narrow_leg_is_found_containers_are_told_and_nothing_is_fragmented() {
    // h0 -(1500)- h1 -(1280)- h2; h1 only routes, the routers run on h0 and h2.
    let mut lab = Lab::new(3, &[(0, 1), (1, 2)]);
    let (h0, h1, h2) = (lab.hosts[0].clone(), lab.hosts[1].clone(), lab.hosts[2].clone());
    ok(&["ip", "netns", "exec", &h1, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ok(&["ip", "-n", &h1, "link", "set", &format!("wu1a{}", lab.id), "mtu", "1280"]);
    ok(&["ip", "-n", &h2, "link", "set", &format!("wu1b{}", lab.id), "mtu", "1280"]);
    ok(&["ip", "-n", &h0, "route", "add", "10.201.1.0/24", "via", "10.201.0.2"]);
    ok(&["ip", "-n", &h2, "route", "add", "10.201.0.0/24", "via", "10.201.1.1"]);
    lab.launch(0, &[]);
    lab.launch(2, &["10.201.0.1"]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c2 = lab.container(2, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE), "containers reach each other");
    // h2 was given its peer: its default MTU follows the route there (1280 less 68 bytes);
    // h0 was given none, and takes its own interface's (1500 less 68).
    let mtu = |c: &str| ok(&["ip", "-n", c, "-o", "link", "show", "ethwe"]);
    assert!(mtu(&c2).contains("mtu 1212"), "{}", mtu(&c2));
    assert!(mtu(&c0).contains("mtu 1432"), "{}", mtu(&c0));
    // Every underlay host, the router in the middle too: without "don't fragment" it would
    // cut our 1,472-byte datagrams for its 1,280-byte leg.
    let frags = |lab: &Lab| [0, 1, 2].map(|h| counter(&lab.hosts[h], "IpFragCreates"));
    let before = frags(&lab);

    // The path carries 1280-byte packets: 1252 bytes of UDP payload, less 26 of frames
    // headers and 14 of Ethernet leave 1212 for the containers' IP packets.
    let path_ip = 1280 - 28 - 24 - 2 - 14;
    // h0's bridge is as wide as its own 1500-byte interface allows; its status knows better.
    let status = String::from_utf8_lossy(&lab.weave(0, &["status", "connections"]).stdout).into_owned();
    assert!(status.contains("pmtu 1280") || status.contains("pmtu 127"), "{status}");
    let fits = df_ping(&c0, "10.32.0.2", path_ip - 28);
    assert!(fits.status.success(), "a DF ping that fits the path passes: {fits:?}");
    // A DF ping at the overlay MTU (the bridge's: 1500 less 68) is too big for the path.
    let big = df_ping(&c0, "10.32.0.2", 1432 - 28);
    let text = String::from_utf8_lossy(&big.stdout).into_owned() + &String::from_utf8_lossy(&big.stderr);
    assert!(!big.status.success(), "a DF ping over the path's limit does not pass: {text}");
    assert!(text.contains(&format!("mtu = {path_ip}")) || text.contains(&format!("mtu={path_ip}")), "{text}");

    // 8 MiB each way over TCP: the containers' stacks size their segments for the path.
    lab.transfer(&c0, &c2, "10.32.0.2", 8 << 20);
    lab.transfer(&c2, &c0, "10.32.0.1", 8 << 20);
    assert_eq!(frags(&lab), before, "no host fragmented a datagram");
    let metrics = lab.metrics(0);
    assert!(metrics.contains("weave_path_mtu_bytes{peer="), "{metrics}");
    // The router namespace's "fragmentation needed" for our first, full-size probe reached
    // the router through its socket's error queue.
    let reported = metrics.lines().find(|l| l.starts_with("weave_path_mtu_events_total{event=\"kernel_report\"}"));
    assert!(reported.is_some_and(|l| !l.ends_with(" 0")), "{metrics}");
    let answered = metrics.lines().find(|l| l.starts_with("weave_frames_too_big_total{action=\"icmp_sent\"}"));
    assert!(answered.is_some_and(|l| !l.ends_with(" 0")), "{metrics}");
}

#[test]
fn a_jumbo_underlay_carries_full_size_frames_unfragmented() {
    let mut lab = Lab::new(2, &[(0, 1)]);
    ok(&["ip", "-n", &lab.hosts[0], "link", "set", &format!("wu0a{}", lab.id), "mtu", "9000"]);
    ok(&["ip", "-n", &lab.hosts[1], "link", "set", &format!("wu0b{}", lab.id), "mtu", "9000"]);
    // The default overlay MTU follows the underlay: 9000 less 68 bytes of weave's overhead.
    lab.launch(0, &[]);
    lab.launch(1, &["10.201.0.1"]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c1 = lab.container(1, &["10.32.0.2/24"]);
    let mtu = ok(&["ip", "-n", &c0, "-o", "link", "show", "ethwe"]);
    assert!(mtu.contains("mtu 8932"), "{mtu}");
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    let before = [0, 1].map(|h| counter(&lab.hosts[h], "IpFragCreates"));
    let full = df_ping(&c0, "10.32.0.2", 8932 - 28);
    assert!(full.status.success(), "a full-size DF ping passes: {full:?}");
    lab.transfer(&c1, &c0, "10.32.0.1", 8 << 20);
    assert_eq!([0, 1].map(|h| counter(&lab.hosts[h], "IpFragCreates")), before, "nothing was fragmented");
}
