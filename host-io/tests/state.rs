//! The state directory on real namespace hosts: exposed subnets come back when the router
//! starts again, a corrupt file is reported and left alone, and `weave reset` removes only
//! what weave keeps there.
//!
//! Needs root (CI runs as root).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn exposed_subnets_come_back_after_a_restart() {
    let lab = Lab::new(1, &[]);
    lab.launch(0, &[]);
    let o = lab.weave(0, &["expose", "10.32.0.254/24"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The host goes down hard: the router dies, and the address and the NAT rule are gone.
    let h = &lab.hosts[0];
    ok(&["kill", "-9", &lab.pid(0).expect("pid file").to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    ok(&["ip", "-n", h, "addr", "del", "10.32.0.254/24", "dev", "weave"]);
    let rule = ["-s", "10.32.0.0/24", "!", "-o", "weave", "-j", "MASQUERADE"];
    let nat = |op: &str| {
        let mut a = vec!["ip", "netns", "exec", h, "iptables", "-w", "-t", "nat", op, "POSTROUTING"];
        a.extend_from_slice(&rule);
        sh(&a).status.success()
    };
    assert!(nat("-D"), "the rule was there");
    lab.launch(0, &[]);
    let addrs = ok(&["ip", "-n", h, "-o", "addr", "show", "dev", "weave"]);
    assert!(addrs.contains("10.32.0.254/24"), "the address is back: {addrs}");
    assert!(nat("-C"), "the NAT rule is back");
}

#[test]
fn a_corrupt_state_file_is_reported_and_never_replaced() {
    let mut lab = Lab::new(1, &[]);
    lab.launch(0, &[]);
    let dir = lab.dir.join("h0");
    let garbage = "{ this is not json";
    std::fs::write(dir.join("attachments.json"), garbage).unwrap();
    let c = format!("wc-bad-{}", lab.id);
    ok(&["ip", "netns", "add", &c]);
    lab.containers.push(c.clone());
    let o = lab.weave(0, &["attach", "10.32.0.1/24", &format!("netns:{c}")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("attachments.json is corrupt") && err.contains("move it aside"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("attachments.json")).unwrap(), garbage, "left as it was");
    let o = lab.weave(0, &["ps"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("attachments.json is corrupt"), "{o:?}");
}

#[test]
fn reset_removes_only_what_weave_keeps() {
    let lab = Lab::new(1, &[]);
    lab.launch(0, &[]);
    let dir = lab.dir.join("h0");
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let o = lab.weave(0, &["reset", "--state-dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let left: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, vec!["notes.txt".to_string()], "weave's files are gone, nothing else");
}

/// A state directory the router cannot write: `launch` says which file and why, and leaves
/// nothing behind (no bridge, no router).
#[test]
fn a_read_only_state_directory_is_refused_before_anything_is_made() {
    let lab = Lab::new(1, &[]);
    let dir = lab.dir.join("h0");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    // Root writes through permissions; a read-only mount stops even root.
    ok(&["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", d]);
    struct Unmount<'a>(&'a str);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = sh(&["umount", self.0]);
        }
    }
    let _u = Unmount(d);
    let o = lab.try_launch(0, &[], Secret::None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("Read-only file system") && err.contains("--state-dir"), "{err}");
    let links = ok(&["ip", "-n", &lab.hosts[0], "-o", "link", "show"]);
    assert!(!links.contains("weave"), "no bridge was made: {links}");
    assert!(lab.pid(0).is_none());
}

/// A resolver that never answers delays only the request that needs it: `weave connect` to a
/// name waits (and then fails, saying why) while traffic between containers flows on.
#[test]
fn a_resolver_that_never_answers_does_not_stall_traffic() {
    let mut lab = two_hosts();
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    // `ip netns exec` gives the router this resolv.conf: a nameserver on the lab's own link
    // that nobody has, so every query waits out its timeout.
    let etc = std::path::PathBuf::from("/etc/netns").join(&lab.hosts[0]);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("resolv.conf"), "nameserver 10.201.0.99\noptions timeout:5 attempts:3\n").unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(etc);
    // The router was launched before the file existed; launch it again so it reads it.
    ok(&["kill", "-9", &lab.pid(0).expect("pid file").to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    lab.launch(0, &[]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    let connect = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], WEAVE, "connect", "peer.weave-test.invalid"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // While the name is being resolved, every ping is answered at once.
    for _ in 0..5 {
        let o = sh(&["ip", "netns", "exec", &c0, "ping", "-c", "1", "-W", "1", "10.32.0.2"]);
        assert!(o.status.success(), "traffic stalled while a name resolves: {o:?}");
    }
    let st = lab.weave(0, &["status"]);
    assert!(st.status.success(), "the API answers meanwhile: {st:?}");
    let out = connect.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("peer.weave-test.invalid"), "{err}");
}
