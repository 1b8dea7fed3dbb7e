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
