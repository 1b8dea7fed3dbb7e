//! A router's life on a real host: routers on two bridges of one host keep to their own
//! plumbing, a second router on a bridge is refused, a failed launch leaves nothing, `stop`
//! returns when the router is gone, `reset` removes everything weave made, and the bridge's
//! MAC does not move when containers come.
//!
//! Needs root (CI runs as root).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// `weave ARGS` on `host`, with the API (and control socket) of the router on `http`.
fn weave_at(lab: &Lab, host: usize, http: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &lab.hosts[host], WEAVE])
        .args(args)
        .env("WEAVE_HTTP_ADDR", http)
        .env_remove("WEAVE_PASSWORD")
        .output()
        .expect("run weave")
}

/// Launches a second router on `host`: its own bridge, ports, API and state directory.
fn launch_second(lab: &Lab, host: usize, bridge: &str, extra: &[&str]) -> Output {
    let dir = lab.dir.join(format!("h{host}-{bridge}"));
    let mut args = vec!["launch", "--bridge", bridge, "--port", "6790", "--state-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    weave_at(lab, host, "127.0.0.1:6794", &args)
}

fn links(lab: &Lab, host: usize) -> String {
    ok(&["ip", "-n", &lab.hosts[host], "-o", "link", "show"])
}

fn controller(lab: &Lab, host: usize, port: &str) -> String {
    let l = ok(&["ip", "-n", &lab.hosts[host], "-o", "link", "show", "dev", port]);
    l.split_whitespace().skip_while(|w| *w != "master").nth(1).unwrap_or("").to_string()
}

#[test]
fn routers_on_two_bridges_keep_to_their_own_and_a_second_on_one_is_refused() {
    let mut lab = two_hosts();
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    let o = launch_second(&lab, 0, "weave2", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(controller(&lab, 0, "vethwe-bridge"), "weave", "the first router's port stays on its bridge");
    let l = links(&lab, 0);
    let second = l.lines().find(|x| x.contains("vethwe-b") && x.contains("master weave2")).unwrap_or_default();
    assert!(!second.is_empty(), "the second bridge has its own port: {l}");
    assert!(lab.pings(&c0, "10.32.0.2", Duration::from_secs(5)), "the first router's containers still reach h1");
    // A third router on the first bridge would take its frames: refused, changing nothing.
    let dir = lab.dir.join("h0-third");
    let o = weave_at(&lab, 0, "127.0.0.1:6795", &["launch", "--port", "6791", "--state-dir", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("served by another weave router"), "{err}");
    assert!(!dir.join("router.pid").exists(), "no stale pid file");
    assert!(lab.pings(&c0, "10.32.0.2", Duration::from_secs(5)), "and the first router still works");
    let o = weave_at(&lab, 0, "127.0.0.1:6794", &["reset", "--bridge", "weave2", "--state-dir", "/nonexistent-weave"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l = links(&lab, 0);
    assert!(!l.contains("weave2") && l.contains("vethwe-bridge"), "only the second router's plumbing went: {l}");
    assert!(lab.pings(&c0, "10.32.0.2", Duration::from_secs(5)));
}

#[test]
fn a_launch_that_fails_leaves_nothing_behind() {
    let lab = Lab::new(1, &[]);
    // Something that is not a weave router holds the API address.
    let mut squatter = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "nc", "-l", "-k", "127.0.0.1", "6784"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let o = lab.try_launch(0, &[], Secret::None);
    let _ = squatter.kill();
    let _ = squatter.wait();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("cannot serve the HTTP API"), "{err}");
    let l = links(&lab, 0);
    assert!(!l.contains("weave") && !l.contains("vethwe"), "the bridge and port are gone: {l}");
    assert!(lab.pid(0).is_none(), "no stale pid file");
    // And the next launch works.
    lab.launch(0, &[]);
}

#[test]
fn stop_returns_when_the_router_is_gone_so_launch_can_follow_at_once() {
    let lab = Lab::new(1, &[]);
    for round in 0..3 {
        lab.launch(0, &[]);
        let pid = lab.pid(0).expect("pid");
        let o = lab.weave(0, &["stop"]);
        assert!(o.status.success(), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(state.is_empty() || state.contains("zombie"), "round {round}: the router has exited: {state}");
    }
}

#[test]
fn reset_removes_everything_weave_made_and_nothing_else() {
    let mut lab = Lab::new(1, &[]);
    lab.launch(0, &[]);
    let h = lab.hosts[0].clone();
    lab.container(0, &["10.32.0.1/24"]);
    let o = lab.weave(0, &["expose", "10.32.0.254/24"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Something of the user's: a rule and a link weave must leave alone.
    ok(&[
        "ip",
        "netns",
        "exec",
        &h,
        "iptables",
        "-w",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "192.0.2.0/24",
        "-j",
        "MASQUERADE",
    ]);
    ok(&["ip", "-n", &h, "link", "add", "mine0", "type", "veth", "peer", "name", "mine1"]);
    let dir = lab.dir.join("h0");
    let o = lab.weave(0, &["reset", "--state-dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l = links(&lab, 0);
    assert!(!l.contains("weave") && !l.contains("vethwe"), "bridge, capture port and container veths are gone: {l}");
    assert!(l.contains("mine0"), "the user's link stays: {l}");
    let nat = ok(&["ip", "netns", "exec", &h, "iptables", "-w", "-t", "nat", "-S", "POSTROUTING"]);
    assert!(!nat.contains("10.32.0.0/24"), "the exposed subnet's NAT is gone: {nat}");
    assert!(nat.contains("192.0.2.0/24"), "the user's rule stays: {nat}");
    let filter = ok(&["ip", "netns", "exec", &h, "iptables", "-w", "-S"]);
    assert!(!filter.contains("WEAVE"), "weave's chain is gone: {filter}");
    let ethwe = sh(&["ip", "-n", &lab.containers[0], "link", "show", "ethwe"]);
    assert!(!ethwe.status.success(), "the container's ethwe went with its veth");
}

#[test]
fn the_bridge_mac_is_fixed_from_the_peer_name_and_does_not_move() {
    let mut lab = Lab::new(1, &[]);
    let peer = lab.launch(0, &[]);
    let host = lab.hosts[0].clone();
    let mac = move || {
        let l = ok(&["ip", "-n", &host, "-o", "link", "show", "dev", "weave"]);
        l.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).unwrap_or("").to_string()
    };
    let before = mac();
    for i in 0..3 {
        lab.container(0, &[&format!("10.32.0.{}/24", i + 1)]);
        assert_eq!(mac(), before, "attach {i} left the bridge's MAC alone");
    }
    let mut want: Vec<u8> = peer.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
    want[0] = (want[0] | 2) & 0xfe;
    want[5] ^= 0xff;
    let want = want.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    assert_eq!(before, want, "derived from the peer name {peer}");
    // A restarted router keeps it.
    assert!(lab.weave(0, &["stop"]).status.success());
    lab.launch(0, &[]);
    assert_eq!(mac(), before);
}

#[test]
fn small_things_a_user_notices() {
    let mut lab = Lab::new(1, &[]);
    // A log level that does not exist is refused before anything happens.
    let o = lab.weave(0, &["launch", "--log-level", "chatty"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("chatty") && err.contains("possible values"), "{err}");
    assert!(!links(&lab, 0).contains("weave"));
    // The log is appended to: a second launch keeps what the first router wrote.
    lab.launch(0, &[]);
    assert!(lab.weave(0, &["stop"]).status.success());
    lab.launch(0, &[]);
    let log = std::fs::read_to_string(lab.dir.join("h0/router.log")).unwrap();
    assert_eq!(log.matches("router started").count(), 2, "{log}");
    // Status says which data path and MTU are in use; the report's times are wall-clock
    // times with their zone.
    let status = String::from_utf8_lossy(&lab.weave(0, &["status"]).stdout).into_owned();
    let backend = if std::env::var("WEAVE_CAPTURE").as_deref() == Ok("pcap") { "pcap" } else { "packet sockets" };
    assert!(status.contains(&format!("Data path: {backend}")) && status.contains("on vethwe-pcap"), "{status}");
    assert!(status.contains("MTU: "), "{status}");
    let report: serde_json::Value = serde_json::from_slice(&lab.weave(0, &["report"]).stdout).unwrap();
    let year = format!(
        "{}-",
        1970 + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 31_556_952
    );
    for k in ["now", "started"] {
        let t = report[k].as_str().unwrap_or_default();
        assert!(t.starts_with(&year) && t.ends_with('Z'), "{k}: {t}");
    }
    // Metrics in Prometheus' text format unless OpenMetrics is asked for.
    let scrape = |accept: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", &lab.hosts[0], "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/127.0.0.1/6784; printf 'GET /metrics HTTP/1.0\\r\\nAccept: {accept}\\r\\n\\r\\n' >&3; cat <&3"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plain = scrape("text/plain");
    assert!(plain.contains("content-type: text/plain; version=0.0.4") && !plain.contains("# EOF"), "{plain}");
    let open = scrape("application/openmetrics-text; version=1.0.0");
    assert!(open.contains("content-type: application/openmetrics-text") && open.contains("# EOF"), "{open}");
    // A reader that goes away early ends the command quietly.
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "bash", "-c"])
        // `true` has gone before weave writes: the write meets a pipe with no reader.
        .arg(format!("set -o pipefail; {WEAVE} report | true"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "{o:?}");
    // An address another container holds is refused, unless forced.
    let a = lab.container(0, &["10.32.0.1/24"]);
    let b = format!("wc-dup-{}", lab.id);
    ok(&["ip", "netns", "add", &b]);
    lab.containers.push(b.clone());
    let o = lab.weave(0, &["attach", "10.32.0.1/24", &format!("netns:{b}")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&format!("already attached to netns:{a}")), "{err}");
    let o = lab.weave(0, &["attach", "10.32.0.2/24", &format!("netns:{b}")]);
    assert!(o.status.success(), "another address is fine: {o:?}");
    let o = lab.weave(0, &["attach", "--force", "10.32.0.1/24", &format!("netns:{a}-x")]);
    assert!(!o.status.success(), "a missing target still fails: {o:?}");
    assert!(lab.weave(0, &["expose", "10.32.0.254/24"]).status.success());
    let o = lab.weave(0, &["attach", "10.32.0.254/24", &format!("netns:{b}")]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bridge weave's own address"), "{o:?}");
    let o = lab.weave(0, &["attach", "--force", "10.32.0.1/24", &format!("netns:{b}")]);
    assert!(o.status.success(), "forced: {o:?}");
}
