//! Why a peer cannot be reached, on real namespace hosts: each kind of dial failure shows
//! its address and the operating system's reason in `weave status targets`, and a peer
//! given by a name that resolves only later is retried and connected.
//!
//! Needs root (CI runs as root).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// `/etc/netns/HOST/`, which `ip netns exec` mounts over `/etc`'s files of the same names;
/// removed at the end.
struct Etc(PathBuf);

impl Drop for Etc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn targets(lab: &Lab) -> String {
    String::from_utf8_lossy(&lab.weave(0, &["status", "targets"]).stdout).into_owned()
}

fn line<'a>(t: &'a str, addr: &str) -> &'a str {
    t.lines().find(|l| l.starts_with(addr)).unwrap_or("")
}

#[test]
fn each_dial_failure_says_why_and_a_name_that_resolves_later_connects() {
    let lab = Lab::new(2, &[(0, 1)]);
    let etc = Etc(PathBuf::from("/etc/netns").join(&lab.hosts[0]));
    std::fs::create_dir_all(&etc.0).unwrap();
    // Names resolve from this file only: nothing listens on the nameserver's port.
    std::fs::write(etc.0.join("resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
    std::fs::write(etc.0.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    // h1 answers port 6783 with a reset (no router yet) and drops what comes to 6790.
    ok(&[
        "ip",
        "netns",
        "exec",
        &lab.hosts[1],
        "iptables",
        "-w",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "6790",
        "-j",
        "DROP",
    ]);
    lab.launch(0, &["10.201.0.2", "10.201.0.2:6790", "10.201.0.77", "192.0.2.1", "later.weave-test"]);
    let want = [
        ("10.201.0.2:6783", "connection refused"),
        ("10.201.0.2:6790", "timed out"),
        ("10.201.0.77:6783", "no route to host"),
        ("192.0.2.1:6783", "network unreachable"),
        ("later.weave-test", "unresolved"),
    ];
    let end = Instant::now() + Duration::from_secs(20);
    let mut t = targets(&lab);
    while Instant::now() < end && !want.iter().all(|(a, why)| line(&t, a).contains(why)) {
        std::thread::sleep(Duration::from_millis(500));
        t = targets(&lab);
    }
    for (addr, why) in want {
        assert!(line(&t, addr).contains(why), "{addr}: {why} in\n{t}");
    }
    // The log names the address with the reason.
    let log = std::fs::read_to_string(lab.dir.join("h0/router.log")).unwrap_or_default();
    assert!(log.lines().any(|l| l.contains("10.201.0.2:6783") && l.contains("connection refused")), "{log}");
    assert!(!log.contains("peer=None"), "{log}");
    // The name comes to resolve, to h1, where a router now runs: it is connected.
    std::fs::write(etc.0.join("hosts"), "127.0.0.1 localhost\n10.201.0.2 later.weave-test\n").unwrap();
    lab.launch(1, &[]);
    // The name is tried again on the redial backoff (1, 2, 4, 8… s): well within 40 s.
    let end = Instant::now() + Duration::from_secs(40);
    let mut t = targets(&lab);
    while Instant::now() < end && (t.contains("later.weave-test") || !line(&t, "10.201.0.2:6783").contains("connected"))
    {
        std::thread::sleep(Duration::from_millis(500));
        t = targets(&lab);
    }
    assert!(line(&t, "10.201.0.2:6783").contains("connected"), "{t}");
    assert!(!t.contains("later.weave-test"), "resolved, no longer listed: {t}");
    let log = std::fs::read_to_string(lab.dir.join("h0/router.log")).unwrap_or_default();
    assert!(log.contains("peer name resolved"), "{log}");
}

/// Two routers told of each other keep one connection; each shows its target connected,
/// whichever side's dial won.
#[test]
fn a_target_connected_by_the_other_side_shows_as_connected() {
    let lab = Lab::new(2, &[(0, 1)]);
    lab.launch(0, &["10.201.0.2"]);
    lab.launch(1, &["10.201.0.1"]);
    let status = |h: usize| String::from_utf8_lossy(&lab.weave(h, &["status", "targets"]).stdout).into_owned();
    let established = || {
        let conns = String::from_utf8_lossy(&lab.weave(0, &["status", "connections"]).stdout).into_owned();
        conns.lines().filter(|l| l.contains("established")).count()
    };
    let end = Instant::now() + SETTLE;
    while Instant::now() < end && established() == 0 {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(established(), 1, "one connection between the two");
    assert!(status(0).contains(" connected "), "{}", status(0));
    assert!(status(1).contains(" connected "), "{}", status(1));
}
