//! Real hosts as network namespaces joined by veth "underlay" links, a real `weave` router in
//! each, containers as further namespaces, and real traffic between them.
//!
//! Needs root (CI runs as root). Every test makes its own uniquely named namespaces and
//! removes them, and its routers, even when it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn two_hosts_containers_ping_both_ways_and_status_shows_the_peer() {
    let mut lab = Lab::new(2, &[(0, 1)]);
    let n0 = lab.launch(0, &[]);
    lab.launch(1, &["10.201.0.1"]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c1 = lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE), "h0's container reaches h1's");
    assert!(lab.pings(&c1, "10.32.0.1", SETTLE), "and back");
    let conns = String::from_utf8_lossy(&lab.weave(1, &["status", "connections"]).stdout).into_owned();
    assert!(conns.contains("established") && conns.contains(&n0) && conns.contains("(h0)"), "{conns}");
    let report: serde_json::Value = serde_json::from_slice(&lab.weave(1, &["report"]).stdout).unwrap();
    assert_eq!(report["connections"][0]["state"], "established");
    assert!(report["stats"]["frames_injected"].as_u64().unwrap() > 0);
}

#[test]
fn three_hosts_in_a_line_relay_between_the_ends() {
    // h0 - h1 - h2: no underlay between h0 and h2.
    let mut lab = Lab::new(3, &[(0, 1), (1, 2)]);
    lab.launch(1, &[]);
    lab.launch(0, &["10.201.0.2"]);
    lab.launch(2, &["10.201.1.1"]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(2, &["10.32.0.3/24"]);
    assert!(lab.pings(&c0, "10.32.0.3", SETTLE), "the ends talk through h1");
    let report: serde_json::Value = serde_json::from_slice(&lab.weave(1, &["report"]).stdout).unwrap();
    assert!(report["stats"]["frames_relayed"].as_u64().unwrap() > 0, "h1 relayed");
}

#[test]
fn containers_on_different_subnets_cannot_reach_each_other() {
    let mut lab = two_hosts();
    let a = lab.container(0, &["10.32.0.1/24"]);
    let b = lab.container(0, &["10.40.0.2/24"]);
    lab.container(1, &["10.40.0.3/24"]);
    lab.container(1, &["10.32.0.4/24"]);
    assert!(lab.pings(&a, "10.32.0.4", SETTLE), "same subnet across hosts");
    assert!(lab.pings(&b, "10.40.0.3", SETTLE), "the other subnet too");
    assert!(!lab.pings(&a, "10.40.0.2", Duration::from_secs(2)), "not across subnets on one host");
    assert!(!lab.pings(&a, "10.40.0.3", Duration::from_secs(2)), "nor across hosts");
}

#[test]
fn a_killed_router_launched_again_keeps_its_name_and_traffic_resumes() {
    let mut lab = Lab::new(2, &[(0, 1)]);
    lab.launch(0, &[]);
    let before = lab.launch(1, &["10.201.0.1"]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    let pid = lab.pid(1).expect("pid file");
    ok(&["kill", "-9", &pid.to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    // Launched with no peers: the saved state brings the name and the peer back.
    let after = lab.launch(1, &[]);
    assert_eq!(before, after);
    assert!(lab.pings(&c0, "10.32.0.2", Duration::from_secs(30)), "traffic resumes");
}

#[test]
fn bad_arguments_and_missing_routers_get_clear_errors() {
    let lab = Lab::new(1, &[]);
    let o = lab.weave(0, &["status"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no weave router answers"), "{o:?}");
    let o = lab.weave(0, &["attach", "10.32.0.1/33", "netns:nowhere"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a CIDR"), "{o:?}");
    let o = lab.weave(0, &["attach", "10.32.0.1/24", "netns:nowhere"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"), "{o:?}");
    let o = lab.weave(0, &["attach", "10.32.0.1/24", "/proc/self/ns/net"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bridge weave does not exist"), "{o:?}");
    let o = lab.weave(0, &["status", "nonsense"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown status section"), "{o:?}");
}

/// Settings no router can run with are refused at launch, saying which and why, and nothing
/// is made or written: no state directory, no bridge.
#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let lab = Lab::new(1, &[]);
    let dir = lab.dir.join("state");
    let dir = dir.to_str().unwrap();
    for (flags, want) in [
        (&["--name", "ff:ff:ff:ff:ff:ff"][..], "--name ff:ff:ff:ff:ff:ff: ff:ff:ff:ff:ff:ff cannot name a peer"),
        (&["--name", "01:00:00:00:00:02"][..], "cannot name a peer"),
        (&["--name", "00:00:00:00:00:00"][..], "cannot name a peer"),
        (&["--conn-limit", "0"][..], "--conn-limit: conn_limit is 0"),
        (&["--port", "0"][..], "--port 0"),
        (&["--mtu", "100"][..], "--mtu 100"),
    ] {
        let mut args = vec!["launch", "--state-dir", dir];
        args.extend_from_slice(flags);
        let o = lab.weave(0, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{flags:?}: {err}");
        assert!(!std::path::Path::new(dir).exists(), "{flags:?} wrote {dir}");
        let links = ok(&["ip", "-n", &lab.hosts[0], "-o", "link", "show"]);
        assert!(!links.contains("weave"), "{flags:?} made a bridge: {links}");
    }
}

/// Everything the daemon exposes to other users of the host: its argv, its environment, its
/// log.
fn daemon_exposure(lab: &Lab, host: usize) -> String {
    let pid = lab.pid(host).expect("pid file");
    let mut all = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    all.extend(std::fs::read(format!("/proc/{pid}/environ")).unwrap());
    all.extend(std::fs::read(lab.dir.join(format!("h{host}/router.log"))).unwrap_or_default());
    String::from_utf8_lossy(&all).into_owned()
}

/// "SECRET-PAYLOAD!!" as ping's pattern (hex).
const PATTERN: &str = "5345435245542d5041594c4f41442121";

#[test]
fn two_hosts_with_one_password_ping_and_the_underlay_carries_no_plaintext() {
    let mut lab = Lab::new(2, &[(0, 1)]);
    lab.launch_with(0, &[], Secret::File("correct horse battery"));
    lab.launch_with(1, &["10.201.0.1"], Secret::Env("correct horse battery"));
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE), "encrypted peers carry traffic");
    let status = String::from_utf8_lossy(&lab.weave(0, &["status"]).stdout).into_owned();
    assert!(status.contains("Encryption: enabled"), "{status}");
    let conns = String::from_utf8_lossy(&lab.weave(0, &["status", "connections"]).stdout).into_owned();
    assert!(conns.contains("established") && conns.contains("encrypted"), "{conns}");

    // Capture the underlay and the bridge while a known payload crosses.
    let under = lab.dir.join("underlay.pcap");
    let bridge = lab.dir.join("bridge.pcap");
    let dump = |iface: &str, file: &PathBuf| {
        Command::new("ip")
            .args(["netns", "exec", &lab.hosts[0], "tcpdump", "-U", "-n", "-s", "0", "-i", iface, "-w"])
            .arg(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump")
    };
    let mut tu = dump(&format!("wu0a{}", lab.id), &under);
    let mut tb = dump("weave", &bridge);
    std::thread::sleep(Duration::from_millis(800));
    ok(&["ip", "netns", "exec", &c0, "ping", "-c", "5", "-i", "0.2", "-p", PATTERN, "10.32.0.2"]);
    std::thread::sleep(Duration::from_millis(500));
    for t in [&mut tu, &mut tb] {
        let _ = sh(&["kill", "-INT", &t.id().to_string()]);
        let _ = t.wait();
    }
    let (u, b) = (std::fs::read(&under).unwrap(), std::fs::read(&bridge).unwrap());
    let needle = b"SECRET-PAYLOAD!!";
    let has = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(has(&b), "the payload crosses the bridge in the clear (the capture works)");
    assert!(u.len() > 2000, "the underlay capture saw the encrypted datagrams ({} bytes)", u.len());
    assert!(!has(&u), "no plaintext payload on the underlay");

    for h in 0..2 {
        assert!(!daemon_exposure(&lab, h).contains("correct horse"), "h{h}: password in argv, environment or log");
    }
}

#[test]
fn different_passwords_do_not_connect_and_status_says_why() {
    let mut lab = Lab::new(2, &[(0, 1)]);
    lab.launch_with(0, &[], Secret::File("alpha-alpha"));
    lab.launch_with(1, &["10.201.0.1"], Secret::File("bravo-bravo"));
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    assert!(!lab.pings(&c0, "10.32.0.2", Duration::from_secs(5)), "no traffic between different passwords");
    for h in 0..2 {
        let conns = String::from_utf8_lossy(&lab.weave(h, &["status", "connections"]).stdout).into_owned();
        assert!(conns.contains("password mismatch"), "h{h} says why: {conns}");
        assert!(!conns.contains("established"), "h{h}: {conns}");
        let metrics = lab.metrics(h);
        assert!(!metrics.contains("weave_password_mismatches_total 0"), "h{h} counts it");
        let exposed = daemon_exposure(&lab, h);
        assert!(!exposed.contains("alpha-alpha") && !exposed.contains("bravo-bravo"), "h{h} leaks a password");
    }
}

#[test]
fn a_bad_password_setting_is_refused_at_launch_and_never_echoed() {
    let lab = Lab::new(1, &[]);
    let o = lab.try_launch(0, &[], Secret::File(""));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("password is empty"), "{o:?}");
    let o = lab.weave(0, &["launch", "--password-file", "/nonexistent/pw", "--state-dir", "/tmp/x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the password file"), "{o:?}");
    // A password on the command line is not an option at all.
    let o = lab.weave(0, &["launch", "--password", "s3cret-pa55"]);
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("s3cret-pa55"), "{o:?}");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.hosts[0], WEAVE, "launch", "--mtu", "1450", "--state-dir"]);
    let o = cmd.arg(lab.dir.join("h0")).env("WEAVE_PASSWORD", "s3cret-pa55").output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--mtu 1450 is out of range") && err.contains("with encryption"), "{err}");
    assert!(!err.contains("s3cret-pa55"), "{err}");
}

/// `weave router` (how a service manager runs it) given the password in `WEAVE_PASSWORD`
/// runs without it in its environment: `/proc/PID/environ` of the running router never shows
/// it, and the router is the same process (PID) that was started.
#[test]
fn weave_router_drops_the_password_from_its_environment() {
    let lab = Lab::new(1, &[]);
    let dir = lab.dir.join("h0");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], WEAVE, "router", "--nickname", "h0", "--state-dir"])
        .arg(&dir)
        // As the systemd unit runs it: peers after `--` (one on loopback that refuses).
        .args(["--", "127.0.0.1:1"])
        .env("WEAVE_PASSWORD", "env-pa55word-xyzzy")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + SETTLE;
    while Instant::now() < end && !lab.weave(0, &["status"]).status.success() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = String::from_utf8_lossy(&lab.weave(0, &["status"]).stdout).into_owned();
    assert!(status.contains("Encryption: enabled"), "{status}");
    let pid = lab.pid(0).expect("pid file");
    let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned();
    assert!(!environ.contains("env-pa55word-xyzzy") && !environ.contains("WEAVE_PASSWORD"), "{environ}");
    assert!(!daemon_exposure(&lab, 0).contains("env-pa55word-xyzzy"));
    // `ip netns exec` runs the router as its own child (not a fork of it): same process.
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = parent.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(ppid == child.id() || pid as u32 == child.id(), "the router is the process that was started");
    let _ = child.kill();
    let _ = child.wait();
}

/// Docker sets the FORWARD policy to DROP, and with br_netfilter bridged frames go through
/// FORWARD: weave's rule lets the bridge's own traffic through. Taking that rule away stops
/// the traffic, which shows the check is real.
#[test]
fn traffic_flows_under_a_forward_drop_policy_with_bridge_netfilter() {
    let mut lab = Lab::new(2, &[(0, 1)]);
    for h in &lab.hosts {
        ok(&["ip", "netns", "exec", h, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"]);
        ok(&["ip", "netns", "exec", h, "iptables", "-w", "-P", "FORWARD", "DROP"]);
    }
    lab.launch(0, &[]);
    lab.launch(1, &["10.201.0.1"]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(0, &["10.32.0.3/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE), "across hosts under FORWARD DROP");
    assert!(lab.pings(&c0, "10.32.0.3", Duration::from_secs(5)), "on one host under FORWARD DROP");
    for h in &lab.hosts {
        ok(&["ip", "netns", "exec", h, "iptables", "-w", "-D", "WEAVE", "-i", "weave", "-o", "weave", "-j", "ACCEPT"]);
    }
    assert!(!lab.pings(&c0, "10.32.0.2", Duration::from_secs(3)), "without weave's rule the policy drops it");
}

#[test]
fn launch_refuses_a_bridge_it_did_not_make_and_a_user_who_is_not_root() {
    let lab = Lab::new(1, &[]);
    let h = &lab.hosts[0];
    ok(&["ip", "-n", h, "link", "add", "weave", "mtu", "1400", "type", "bridge"]);
    let o = lab.try_launch(0, &[], Secret::None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("exists with MTU 1400") && err.contains("weave reset"), "{err}");
    assert!(String::from_utf8_lossy(&lab.weave(0, &["status"]).stderr).contains("no weave router answers"));
    ok(&["ip", "-n", h, "link", "del", "weave"]);
    ok(&["ip", "-n", h, "link", "add", "weave", "type", "veth", "peer", "name", "weave-peer"]);
    let o = lab.try_launch(0, &[], Secret::None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is not a bridge"), "{err}");
    ok(&["ip", "-n", h, "link", "del", "weave"]);
    // Once the way is clear, the same launch works: the failures left nothing behind.
    lab.launch(0, &[]);
    for args in [&["launch"][..], &["attach", "10.32.0.1/24", "netns:x"], &["reset"]] {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", WEAVE])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("needs root"), "{args:?}: {err}");
    }
}

#[test]
fn a_silent_drop_on_a_direct_path_is_routed_around_through_the_third_host() {
    // Full mesh of three: h0-h1 on 10.201.0.0/24, h1-h2 on 10.201.1.0/24, h0-h2 on 10.201.2.0/24.
    let mut lab = Lab::new(3, &[(0, 1), (1, 2), (0, 2)]);
    lab.launch(0, &[]);
    lab.launch(1, &["10.201.0.1"]);
    lab.launch(2, &["10.201.2.1", "10.201.1.1"]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(2, &["10.32.0.3/24"]);
    assert!(lab.pings(&c0, "10.32.0.3", SETTLE));
    // A firewall silently drops everything between h0 and h2 on their direct link.
    for (h, peer) in [(0, "10.201.2.2"), (2, "10.201.2.1")] {
        ok(&["ip", "netns", "exec", &lab.hosts[h], "iptables", "-A", "INPUT", "-s", peer, "-j", "DROP"]);
        ok(&["ip", "netns", "exec", &lab.hosts[h], "iptables", "-A", "OUTPUT", "-d", peer, "-j", "DROP"]);
    }
    let t = Instant::now();
    // Keep traffic flowing; pings resume through h1.
    let mut resumed = None;
    while t.elapsed() < Duration::from_secs(10) {
        if sh(&["ip", "netns", "exec", &c0, "ping", "-c", "1", "-W", "1", "10.32.0.3"]).status.success()
            && t.elapsed() > Duration::from_millis(200)
        {
            resumed = Some(t.elapsed());
            break;
        }
    }
    let resumed = resumed.expect("pings resume through the third host");
    println!("pings resumed {resumed:?} after the drop");
    // The side that sent into the void recorded why and when (the other side may have
    // noticed first, by its own probes or by h0's update relayed through h1).
    let end = Instant::now() + Duration::from_secs(3);
    let mut seen = String::new();
    while Instant::now() < end {
        seen = [0, 2]
            .iter()
            .map(|&h| String::from_utf8_lossy(&lab.weave(h, &["status", "connections"]).stdout).into_owned())
            .collect();
        if seen.contains("no answer to probes while sending") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen.contains("no answer to probes while sending"), "{seen}");
    let metrics = lab.metrics(0) + &lab.metrics(2);
    assert!(metrics.contains("weave_link_changes_total{change=\"lost_probe_timeout\"} 1"), "{metrics}");
}

#[test]
fn expose_lets_the_host_reach_containers_and_hide_ends_it_and_ps_lists_them() {
    let mut lab = two_hosts();
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    let host_pings = |lab: &Lab, ip: &str, within: Duration| lab.pings(&lab.hosts[0], ip, within);
    assert!(!host_pings(&lab, "10.32.0.2", Duration::from_secs(1)), "not exposed yet");
    let o = lab.weave(0, &["expose", "10.32.0.254/24"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(host_pings(&lab, "10.32.0.1", SETTLE), "the host reaches its own container");
    assert!(host_pings(&lab, "10.32.0.2", SETTLE), "and a remote one");
    let ps = String::from_utf8_lossy(&lab.weave(0, &["ps"]).stdout).into_owned();
    let first = ps.lines().next().unwrap();
    assert!(first.starts_with("weave:expose ") && first.ends_with("10.32.0.254/24"), "{ps}");
    assert!(ps.contains(&format!("netns:{c0} ")) && ps.contains("10.32.0.1/24"), "{ps}");
    let o = lab.weave(0, &["hide", "10.32.0.254/24"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!host_pings(&lab, "10.32.0.2", Duration::from_secs(2)), "hidden again");
    let o = lab.weave(0, &["hide", "10.32.0.254/24"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not exposed"));
    // Detach removes the interface and the record.
    let o = lab.weave(0, &["detach", &format!("netns:{c0}")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!sh(&["ip", "-n", &c0, "link", "show", "ethwe"]).status.success());
    let ps = String::from_utf8_lossy(&lab.weave(0, &["ps"]).stdout).into_owned();
    assert!(!ps.contains(&c0), "{ps}");
}

/// Containers on Docker's own bridge are not routed into the weave network, even when the
/// host forwards and has exposed weave; without weave's rule the same packets get through.
#[test]
fn nothing_is_forwarded_from_docker0_into_weave() {
    let mut lab = Lab::new(1, &[]);
    lab.launch(0, &[]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let o = lab.weave(0, &["expose", "10.32.0.254/24"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&["ip", "-n", &c0, "route", "add", "default", "via", "10.32.0.254"]);
    let h = lab.hosts[0].clone();
    let d = format!("wd-{}", lab.id);
    ok(&["ip", "netns", "add", &d]);
    lab.containers.push(d.clone());
    ok(&["ip", "-n", &h, "link", "add", "docker0", "type", "bridge"]);
    ok(&["ip", "-n", &h, "addr", "add", "172.17.0.1/16", "dev", "docker0"]);
    ok(&["ip", "-n", &h, "link", "set", "docker0", "up"]);
    ok(&["ip", "-n", &h, "link", "add", "vd0", "type", "veth", "peer", "name", "eth0", "netns", &d]);
    ok(&["ip", "-n", &h, "link", "set", "vd0", "master", "docker0", "up"]);
    ok(&["ip", "-n", &d, "addr", "add", "172.17.0.2/16", "dev", "eth0"]);
    ok(&["ip", "-n", &d, "link", "set", "eth0", "up"]);
    ok(&["ip", "-n", &d, "link", "set", "lo", "up"]);
    ok(&["ip", "-n", &d, "route", "add", "default", "via", "172.17.0.1"]);
    ok(&["ip", "netns", "exec", &h, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    assert!(lab.pings(&d, "172.17.0.1", Duration::from_secs(3)), "the docker0 side works");
    assert!(!lab.pings(&d, "10.32.0.1", Duration::from_secs(3)), "docker0 does not reach weave");
    ok(&["ip", "netns", "exec", &h, "iptables", "-w", "-D", "WEAVE", "-i", "docker0", "-o", "weave", "-j", "DROP"]);
    assert!(lab.pings(&d, "10.32.0.1", Duration::from_secs(5)), "without weave's rule it would");
}

#[test]
fn connect_and_forget_at_run_time() {
    let mut lab = Lab::new(2, &[(0, 1)]);
    lab.launch(0, &[]);
    lab.launch(1, &[]);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    assert!(!lab.pings(&c0, "10.32.0.2", Duration::from_secs(1)), "not connected yet");
    let o = lab.weave(1, &["connect", "10.201.0.1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    let targets = String::from_utf8_lossy(&lab.weave(1, &["status", "targets"]).stdout).into_owned();
    assert!(targets.contains("10.201.0.1:6783") && targets.contains("connected"), "{targets}");
    // The state directory keeps the peers for the next start.
    let saved = || std::fs::read_to_string(lab.dir.join("h1/peers")).unwrap_or_default();
    assert!(saved().contains("10.201.0.1:6783"), "{}", saved());
    let o = lab.weave(1, &["forget", "10.201.0.1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let targets = String::from_utf8_lossy(&lab.weave(1, &["status", "targets"]).stdout).into_owned();
    assert!(!targets.contains("10.201.0.1:6783"), "{targets}");
    assert!(!saved().contains("10.201.0.1"), "{}", saved());
    let o = lab.weave(1, &["forget", "10.201.0.9"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not among the peers"), "{o:?}");
    let metrics = lab.metrics(1);
    assert!(metrics.contains("weave_connections{state=\"established\"} 1"), "{metrics}");
    assert!(metrics.contains("weave_frames_total{event=\"injected\"}"), "{metrics}");
}

#[test]
fn a_tcp_transfer_between_containers_arrives_byte_for_byte() {
    let mut lab = two_hosts();
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c1 = lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    lab.transfer(&c0, &c1, "10.32.0.2", 4 << 20);
}

/// A container that hands its stack one large buffer to send as many UDP datagrams (UDP
/// segmentation offload, as QUIC stacks do): the datagrams must arrive, each on its own.
/// (Only TCP segments reach the router uncut; the bridge cuts everything else.)
#[test]
fn udp_sent_with_segmentation_offload_arrives_datagram_by_datagram() {
    let mut lab = two_hosts();
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c1 = lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    let receiver = Command::new("ip")
        .args(["netns", "exec", &c1, "python3", "-c"])
        .arg(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('10.32.0.2', 9999))\n\
             s.settimeout(3)\nsizes = []\ntry:\n    while True:\n        sizes.append(len(s.recv(65535)))\n\
             except OSError:\n    pass\nprint(len(sizes), sum(sizes))",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // UDP_SEGMENT (103): 10 datagrams of 1000 bytes from one 10 000-byte send.
    ok(&[
        "ip",
        "netns",
        "exec",
        &c0,
        "python3",
        "-c",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_UDP, 103, 1000)\ns.sendto(b'x' * 10000, ('10.32.0.2', 9999))",
    ]);
    let out = receiver.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10 10000", "ten datagrams of 1000 bytes");
}

/// Under systemd (`Type=notify`), `weave router` says READY=1 once its API answers, and
/// STOPPING=1 when SIGTERM stops it, even after starting itself again to drop the password
/// from its environment.
#[test]
fn weave_router_tells_the_service_manager_when_it_is_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let lab = Lab::new(1, &[]);
    std::fs::create_dir_all(&lab.dir).unwrap();
    let path = lab.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(SETTLE)).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], WEAVE, "router", "--state-dir"])
        .arg(lab.dir.join("h0"))
        .env("NOTIFY_SOCKET", &path)
        .env("WEAVE_PASSWORD", "notify-test-password")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 within the time allowed");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    assert!(lab.weave(0, &["status"]).status.success(), "the API answers once ready");
    let pid = lab.pid(0).expect("pid file");
    ok(&["kill", "-TERM", &pid.to_string()]);
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
