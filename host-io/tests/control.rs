//! Who may steer a router: the control socket (connect, forget, expose, hide, stop) answers
//! root only, whatever a local user sends it; the TCP API serves only what reads; and that
//! API stays on loopback unless asked otherwise.
//!
//! Needs root (CI runs as root).

mod common;

use std::process::Command;

use common::*;

/// Sends one raw line to the router's control socket as user `uid`, from inside host 0's
/// namespace (where the abstract socket lives); returns the answer.
fn raw_control(lab: &Lab, uid: u32, line: &str) -> String {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0weave-control@127.0.0.1:6784')\n\
         s.sendall({line:?}.encode() + b'\\n')\nprint(s.makefile().readline())"
    );
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "setpriv", &format!("--reuid={uid}"), &format!("--regid={uid}")])
        .args(["--clear-groups", "/usr/bin/python3", "-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn only_root_may_steer_the_router_and_http_only_reads() {
    let lab = Lab::new(1, &[]);
    lab.launch(0, &[]);
    for line in [
        r#"{"cmd":"stop"}"#,
        r#"{"cmd":"connect","peers":["10.201.0.9"]}"#,
        r#"{"cmd":"forget","peers":["10.201.0.9"]}"#,
        r#"{"cmd":"expose","cidr":"10.32.0.254/24"}"#,
        r#"{"cmd":"hide","cidr":"10.32.0.254/24"}"#,
    ] {
        let answer = raw_control(&lab, 65534, line);
        assert!(answer.contains("only root may control the router"), "{line}: {answer}");
    }
    let status = String::from_utf8_lossy(&lab.weave(0, &["status", "targets"]).stdout).into_owned();
    assert!(!status.contains("10.201.0.9"), "nobody connected anything: {status}");
    let addrs = ok(&["ip", "-n", &lab.hosts[0], "-o", "addr", "show", "dev", "weave"]);
    assert!(!addrs.contains("10.32.0.254"), "nobody exposed anything: {addrs}");
    // Over TCP, anyone on the host may read, and nobody may steer.
    let http = |req: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", &lab.hosts[0], "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/6784; printf '{req}' >&3; cat <&3")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(http("GET /status HTTP/1.0\\r\\n\\r\\n").contains("Encryption"), "status is readable");
    let posted = http("POST /stop HTTP/1.0\\r\\nContent-Length: 0\\r\\n\\r\\n");
    assert!(!posted.starts_with("HTTP/1.0 200") && !posted.starts_with("HTTP/1.1 200"), "{posted}");
    assert!(lab.weave(0, &["status"]).status.success(), "the router still runs");
    // Root steers through the same socket (the CLI finds it without flags).
    assert!(raw_control(&lab, 0, r#"{"cmd":"connect","peers":["10.201.0.9"]}"#).contains("ok"));
    let status = String::from_utf8_lossy(&lab.weave(0, &["status", "targets"]).stdout).into_owned();
    assert!(status.contains("10.201.0.9"), "{status}");
    // A bad request is refused whole, saying what is wrong, and changes nothing.
    let answer = raw_control(&lab, 0, r#"{"cmd":"connect","peers":["10.201.0.8","h1:99999"]}"#);
    assert!(answer.contains("`99999` is not a port"), "{answer}");
    let o = lab.weave(0, &["connect", "h1:99999"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("`99999` is not a port"), "{o:?}");
    let status = String::from_utf8_lossy(&lab.weave(0, &["status", "targets"]).stdout).into_owned();
    assert!(!status.contains("10.201.0.8"), "{status}");
    let o = lab.weave(0, &["stop"]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn the_status_api_stays_on_loopback_unless_asked() {
    let lab = Lab::new(1, &[]);
    let dir = lab.dir.join("h0");
    let o = lab.weave(0, &["launch", "--http-addr", "0.0.0.0:6784", "--state-dir", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--http-public"), "{err}");
}
