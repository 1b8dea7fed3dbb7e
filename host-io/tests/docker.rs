//! `weave run` and Docker's restarts, on a real Docker daemon with a locally built image.
//!
//! Needs root and dockerd (CI runs as root on a machine with Docker). Every test removes its
//! containers and namespaces, even when it fails.

mod common;

use std::time::{Duration, Instant};

use common::*;

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

#[test]
fn weave_run_without_an_address_takes_one_from_the_allocator_and_removal_frees_it() {
    let image = busybox_image();
    let mut lab = two_hosts();
    let peer = lab.container(1, &["net:default"]);
    let name = format!("weave-ipam-{}", lab.id);
    let _cleanup = Container(name.clone());
    let o = lab.weave(0, &["run", "--pull=never", "--name", &name, image]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let ps = String::from_utf8_lossy(&lab.weave(0, &["ps"]).stdout).into_owned();
    let line = ps.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{ps}"));
    let addr = line.split_whitespace().last().unwrap().to_string();
    let ip: std::net::Ipv4Addr = addr.split('/').next().unwrap().parse().unwrap_or_else(|_| panic!("{line}"));
    assert!(addr.ends_with("/12") && ip.octets()[0] == 10 && (32..48).contains(&ip.octets()[1]), "{line}");
    // The other host's container (given its address by the allocator too) answers it.
    let peer_ip = {
        let o = sh(&["ip", "-n", &peer, "-4", "-o", "addr", "show", "dev", "ethwe"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap().split('/').next().unwrap().to_string()
    };
    assert_ne!(peer_ip, ip.to_string(), "distinct addresses");
    let end = Instant::now() + SETTLE;
    let mut pinged = false;
    while Instant::now() < end && !pinged {
        pinged = sh(&["docker", "exec", &name, "ping", "-c", "1", "-W", "1", &peer_ip]).status.success();
    }
    assert!(pinged, "the container reaches the other host's container");
    let leased = || {
        let o = lab.weave(0, &["status", "ipam"]);
        String::from_utf8_lossy(&o.stdout).contains(&id)
    };
    assert!(leased(), "the lease is the container's");
    ok(&["docker", "rm", "-f", &name]);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && leased() {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!leased(), "Docker's removal frees the address");
}
