//! Real hosts as network namespaces joined by veth "underlay" links, a real `weave` router in
//! each, containers as further namespaces, and real traffic between them.
//!
//! Needs root (CI runs as root). Every test makes its own uniquely named namespaces and
//! removes them, and its routers, even when it fails.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const WEAVE: &str = env!("CARGO_BIN_EXE_weave");
static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// How a test hands `weave launch` the password.
#[derive(Clone, Copy)]
enum Secret<'a> {
    None,
    File(&'a str),
    Env(&'a str),
}

struct Lab {
    id: String,
    hosts: Vec<String>,
    containers: Vec<String>,
    dir: PathBuf,
}

impl Lab {
    /// `n` hosts; `links` are underlay veths between host indices, each its own /24.
    fn new(n: usize, links: &[(usize, usize)]) -> Lab {
        assert!(nix_is_root(), "these tests build network namespaces and need root");
        let id = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("weave-test-{id}"));
        let mut lab = Lab { id: id.clone(), hosts: Vec::new(), containers: Vec::new(), dir };
        for i in 0..n {
            let h = format!("wh{i}-{id}");
            ok(&["ip", "netns", "add", &h]);
            ok(&["ip", "-n", &h, "link", "set", "lo", "up"]);
            lab.hosts.push(h);
        }
        for (k, &(a, b)) in links.iter().enumerate() {
            let (ia, ib) = (format!("wu{k}a{id}"), format!("wu{k}b{id}"));
            ok(&["ip", "link", "add", &ia, "type", "veth", "peer", "name", &ib]);
            ok(&["ip", "link", "set", &ia, "netns", &lab.hosts[a]]);
            ok(&["ip", "link", "set", &ib, "netns", &lab.hosts[b]]);
            ok(&["ip", "-n", &lab.hosts[a], "addr", "add", &format!("{}/24", lab.underlay_ip(k, a, b, a)), "dev", &ia]);
            ok(&["ip", "-n", &lab.hosts[b], "addr", "add", &format!("{}/24", lab.underlay_ip(k, a, b, b)), "dev", &ib]);
            ok(&["ip", "-n", &lab.hosts[a], "link", "set", &ia, "up"]);
            ok(&["ip", "-n", &lab.hosts[b], "link", "set", &ib, "up"]);
        }
        lab
    }

    /// Underlay address of `host` on link `k` between `a` and `b`.
    fn underlay_ip(&self, k: usize, a: usize, _b: usize, host: usize) -> String {
        format!("10.201.{k}.{}", if host == a { 1 } else { 2 })
    }

    fn weave(&self, host: usize, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[host], WEAVE]).args(args);
        cmd.env_remove("WEAVE_PASSWORD");
        cmd.output().expect("run weave")
    }

    fn launch(&self, host: usize, peers: &[&str]) -> String {
        self.launch_with(host, peers, Secret::None)
    }

    /// `weave launch`, with the password (if any) given as `secret` says.
    fn launch_with(&self, host: usize, peers: &[&str], secret: Secret) -> String {
        let o = self.try_launch(host, peers, secret);
        assert!(o.status.success(), "launch on h{host}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn try_launch(&self, host: usize, peers: &[&str], secret: Secret) -> Output {
        let dir = self.dir.join(format!("h{host}"));
        let dir = dir.to_str().unwrap().to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[host], WEAVE, "launch", "--state-dir", &dir]);
        cmd.args(["--nickname", &format!("h{host}")]).env_remove("WEAVE_PASSWORD");
        match secret {
            Secret::None => {}
            Secret::File(pw) => {
                std::fs::create_dir_all(&self.dir).unwrap();
                let f = self.dir.join(format!("password-h{host}"));
                std::fs::write(&f, format!("{pw}\n")).unwrap();
                std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                cmd.arg("--password-file").arg(f);
            }
            Secret::Env(pw) => {
                cmd.env("WEAVE_PASSWORD", pw);
            }
        }
        cmd.args(peers).output().expect("run weave")
    }

    /// A container namespace attached on `host` with `cidrs`.
    fn container(&mut self, host: usize, cidrs: &[&str]) -> String {
        let c = format!("wc{}-{}", self.containers.len(), self.id);
        ok(&["ip", "netns", "add", &c]);
        ok(&["ip", "-n", &c, "link", "set", "lo", "up"]);
        self.containers.push(c.clone());
        let target = format!("netns:{c}");
        let mut args = vec!["attach"];
        args.extend_from_slice(cidrs);
        args.push(&target);
        let o = self.weave(host, &args);
        assert!(o.status.success(), "attach: {}", String::from_utf8_lossy(&o.stderr));
        c
    }

    /// Pings until one answer or `within` runs out.
    fn pings(&self, container: &str, ip: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if sh(&["ip", "netns", "exec", container, "ping", "-c", "1", "-W", "1", ip]).status.success() {
                return true;
            }
        }
        false
    }

    fn pid(&self, host: usize) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("h{host}/router.pid"))).ok()?.trim().parse().ok()
    }
}

fn nix_is_root() -> bool {
    sh(&["id", "-u"]).stdout.starts_with(b"0")
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in 0..self.hosts.len() {
            if let Some(pid) = self.pid(h) {
                let _ = sh(&["kill", "-9", &pid.to_string()]);
            }
        }
        for n in self.containers.iter().chain(&self.hosts) {
            let _ = sh(&["ip", "netns", "del", n]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SETTLE: Duration = Duration::from_secs(15);

/// Two hosts on one underlay link, h1 told to connect to h0.
fn two_hosts() -> Lab {
    let lab = Lab::new(2, &[(0, 1)]);
    lab.launch(0, &[]);
    lab.launch(1, &["10.201.0.1"]);
    lab
}

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
        let metrics = ureq_free_metrics(&lab, h);
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
    let metrics = ureq_free_metrics(&lab, 0) + &ureq_free_metrics(&lab, 2);
    assert!(metrics.contains("weave_link_changes_total{change=\"lost_probe_timeout\"} 1"), "{metrics}");
}

/// `/metrics`, fetched from inside the host's namespace with the CLI's own HTTP client.
fn ureq_free_metrics(lab: &Lab, host: usize) -> String {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.hosts[host],
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/6784; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
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
    let o = lab.weave(1, &["forget", "10.201.0.1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let targets = String::from_utf8_lossy(&lab.weave(1, &["status", "targets"]).stdout).into_owned();
    assert!(!targets.contains("10.201.0.1:6783"), "{targets}");
    let o = lab.weave(1, &["forget", "10.201.0.9"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not among the peers"), "{o:?}");
    let metrics = ureq_free_metrics(&lab, 1);
    assert!(metrics.contains("weave_connections{state=\"established\"} 1"), "{metrics}");
    assert!(metrics.contains("weave_frames_total{event=\"injected\"}"), "{metrics}");
}

#[test]
fn a_tcp_transfer_between_containers_arrives_byte_for_byte() {
    let mut lab = two_hosts();
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c1 = lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    // 4 MiB of pseudo-random bytes.
    let mut data = Vec::with_capacity(4 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 4 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let dir = lab.dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let (src, dst) = (dir.join("sent"), dir.join("received"));
    std::fs::write(&src, &data).unwrap();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &c1, "sh", "-c"])
        .arg(format!("nc -l -p 5001 > {}", dst.display()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent =
        sh(&["ip", "netns", "exec", &c0, "sh", "-c", &format!("nc -N -w 10 10.32.0.2 5001 < {}", src.display())]);
    assert!(sent.status.success(), "{sent:?}");
    let _ = server.wait();
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len(), data.len(), "every byte arrived");
    assert!(got == data, "and in order, unchanged");
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

/// A local image: `FROM scratch` and Debian's static busybox (no registry is needed).
fn busybox_image() -> &'static str {
    const IMAGE: &str = "weave-test-busybox";
    if sh(&["docker", "image", "inspect", IMAGE]).status.success() {
        return IMAGE;
    }
    let dir = std::env::temp_dir().join(format!("weave-bb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy("/bin/busybox", dir.join("busybox")).expect("busybox-static is installed (scripts/test installs it)");
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sleep\", \"3600\"]\n").unwrap();
    ok(&["docker", "build", "-q", "-t", IMAGE, dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    IMAGE
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = sh(&["docker", "rm", "-f", &self.0]);
    }
}

#[test]
fn weave_run_starts_a_docker_container_on_the_network() {
    let image = busybox_image();
    let mut lab = two_hosts();
    lab.container(1, &["10.32.0.2/24"]);
    let name = format!("weave-test-{}", lab.id);
    let _cleanup = Container(name.clone());
    let o = lab.weave(0, &["run", "10.32.0.1/24", "--pull=never", "--name", &name, image]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "prints the container id: {id}");
    let end = Instant::now() + SETTLE;
    let mut pinged = false;
    while Instant::now() < end && !pinged {
        pinged = sh(&["docker", "exec", &name, "ping", "-c", "1", "-W", "1", "10.32.0.2"]).status.success();
    }
    assert!(pinged, "the Docker container reaches the other host's container");
    let ps = String::from_utf8_lossy(&lab.weave(0, &["ps"]).stdout).into_owned();
    assert!(ps.contains(&id) && ps.contains("10.32.0.1/24"), "{ps}");
    // --pull=never: a missing image must not send the test to a registry.
    let o = lab.weave(0, &["run", "10.32.0.9/24", "--pull=never", "no-such-image-here"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("docker run failed"), "{o:?}");
}

#[test]
fn a_container_docker_restarts_is_attached_again() {
    let image = busybox_image();
    let mut lab = two_hosts();
    lab.container(1, &["10.32.0.2/24"]);
    let name = format!("weave-restart-{}", lab.id);
    let _cleanup = Container(name.clone());
    let o = lab.weave(0, &["run", "10.32.0.1/24", "--pull=never", "--name", &name, image]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let pings = |within: Duration| {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if sh(&["docker", "exec", &name, "ping", "-c", "1", "-W", "1", "10.32.0.2"]).status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    assert!(pings(SETTLE), "reaches the other host before the restart");
    ok(&["docker", "restart", "-t", "0", &name]);
    assert!(pings(Duration::from_secs(15)), "attached again after Docker restarted it");
    // The record follows the container into its new namespace (written just after attaching).
    let end = Instant::now() + Duration::from_secs(5);
    let mut ps = String::new();
    while Instant::now() < end && !(ps.contains(&id) && ps.contains("10.32.0.1/24")) {
        std::thread::sleep(Duration::from_millis(200));
        ps = String::from_utf8_lossy(&lab.weave(0, &["ps"]).stdout).into_owned();
    }
    assert!(ps.contains(&id) && ps.contains("10.32.0.1/24"), "{ps}");
    // Removed: its record goes too.
    ok(&["docker", "rm", "-f", &name]);
    let end = Instant::now() + Duration::from_secs(10);
    let mut gone = false;
    while Instant::now() < end && !gone {
        let state = std::fs::read_to_string(lab.dir.join("h0/attachments.json")).unwrap_or_default();
        gone = !state.contains(&id);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gone, "the removed container's attachment is forgotten");
}
