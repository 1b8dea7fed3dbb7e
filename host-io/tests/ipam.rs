//! The address allocator on real hosts: three namespace hosts started together agree on a
//! ring with no operator step, containers attached without an address get distinct ones that
//! ping, a restarted router keeps what it handed out, detach frees, `weave rmpeer` takes a
//! gone host's space, and without it the unused space of a host gone for good returns to the
//! others after the grace period. Needs root (CI runs as root).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A container namespace attached on `host` with `args` (none: an address from the
/// allocator); returns the namespace and the address `weave attach` printed.
fn attach(lab: &mut Lab, host: usize, args: &[&str]) -> (String, String) {
    let (c, o) = lab.try_container(host, args);
    if !o.status.success() {
        let log = std::fs::read_to_string(lab.dir.join(format!("h{host}/router.log"))).unwrap_or_default();
        panic!("attach on h{host}: {}\nits router's log:\n{log}", String::from_utf8_lossy(&o.stderr));
    }
    (c, String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn status_ipam(lab: &Lab, host: usize) -> String {
    let o = lab.weave(host, &["status", "ipam"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ip_of(cidr: &str) -> &str {
    cidr.split('/').next().unwrap()
}

#[test]
fn hosts_started_together_hand_out_distinct_addresses_that_survive_restarts() {
    // A triangle: every host names the other two at launch (so 3 start the network).
    let mut lab = Lab::new(3, &[(0, 1), (0, 2), (1, 2)]);
    lab.launch(0, &["10.201.0.2", "10.201.1.2"]);
    lab.launch(1, &["10.201.0.1", "10.201.2.2"]);
    lab.launch(2, &["10.201.1.1", "10.201.2.1"]);
    let (c0, a0) = attach(&mut lab, 0, &[]);
    let (c1, a1) = attach(&mut lab, 1, &[]);
    let (_c2, a2) = attach(&mut lab, 2, &["net:10.47.255.0/24"]);
    let (_c3, a3) = attach(&mut lab, 2, &[]);
    for a in [&a0, &a1, &a3] {
        let n: ipnet::Ipv4Net = a.parse().unwrap_or_else(|_| panic!("attach prints the address: `{a}`"));
        assert!(n.prefix_len() == 12 && "10.32.0.0/12".parse::<ipnet::Ipv4Net>().unwrap().contains(&n.addr()), "{a}");
    }
    assert!(a2.starts_with("10.47.255.") && a2.ends_with("/24"), "net:CIDR asks in that subnet: {a2}");
    let all = [&a0, &a1, &a2, &a3];
    for (i, x) in all.iter().enumerate() {
        for y in &all[i + 1..] {
            assert_ne!(ip_of(x), ip_of(y), "distinct addresses: {all:?}");
        }
    }
    // The ring was agreed by all three, and the space shared out among them.
    let st = status_ipam(&lab, 1);
    assert!(st.contains("Ring: agreed"), "{st}");
    assert_eq!(st.lines().filter(|l| l.contains(" blocks (")).count(), 3, "three owners: {st}");
    assert!(lab.pings(&c0, ip_of(&a1), SETTLE), "h0's container reaches h1's");
    assert!(lab.pings(&c1, ip_of(&a3), SETTLE), "h1's container reaches h2's");
    // Asking again for the same target gives the same address.
    let o = lab.weave(1, &["attach", &format!("netns:{c1}")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), a1, "the same target gets the same address");
    // A restarted router neither loses nor re-issues what it handed out.
    let o = lab.weave(1, &["stop"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    lab.launch(1, &["10.201.0.1", "10.201.2.2"]);
    let o = lab.weave(1, &["attach", &format!("netns:{c1}")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), a1, "the address survives a restart");
    let (_c4, a4) = attach(&mut lab, 1, &[]);
    assert_ne!(ip_of(&a4), ip_of(&a1), "a new target after the restart gets a new address");
    assert!(lab.metric(1, "weave_ipam_leased") == 2, "{}", lab.metrics(1));
    // Detach frees: the address goes back to the pool.
    let o = lab.weave(1, &["detach", &format!("netns:{c1}")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(lab.metric(1, "weave_ipam_leased"), 1);
    assert!(!status_ipam(&lab, 1).contains(&format!("netns:{c1}")));
    // h2 is gone for good: its space is taken over where the operator says so.
    let name2 = lab.weave(2, &["report"]);
    let name2: serde_json::Value = serde_json::from_slice(&name2.stdout).unwrap();
    let name2 = name2["name"].as_str().unwrap().to_string();
    let o = lab.weave(2, &["stop"]);
    assert!(o.status.success());
    let end = Instant::now() + Duration::from_secs(20);
    let mut taken = String::new();
    while Instant::now() < end {
        let o = lab.weave(0, &["rmpeer", &name2]);
        if o.status.success() {
            taken = String::from_utf8_lossy(&o.stdout).into_owned();
            break;
        }
        // Refused only while h2 still counts as reachable.
        assert!(String::from_utf8_lossy(&o.stderr).contains("is reachable"), "{o:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(taken.contains("took over") && !taken.contains("took over 0 "), "{taken}");
    let st = status_ipam(&lab, 0);
    assert!(!st.lines().any(|l| l.contains(&name2) && l.contains(" blocks (") && !l.contains(": 0 blocks")), "{st}");
    assert!(lab.weave(0, &["rmpeer", "not-a-name"]).stderr.starts_with(b"weave: `not-a-name` is not a peer name"));
}

fn name_of(lab: &Lab, host: usize) -> String {
    let r: serde_json::Value = serde_json::from_slice(&lab.weave(host, &["report"]).stdout).unwrap();
    r["name"].as_str().unwrap().to_string()
}

#[test]
fn a_host_gone_for_good_gives_up_its_unused_space_after_the_grace_period() {
    // 10.48.0.0/24: sixteen blocks of 16.
    let mut lab = Lab::new(3, &[(0, 1), (0, 2), (1, 2)]);
    let args = ["--ipalloc-range", "10.48.0.0/24", "--ipalloc-reclaim-after", "3s"];
    lab.launch_args(0, &args, &["10.201.0.2", "10.201.1.2"], Secret::None);
    lab.launch_args(1, &args, &["10.201.0.1", "10.201.2.2"], Secret::None);
    lab.launch_args(2, &args, &["10.201.1.1", "10.201.2.1"], Secret::None);
    let (c2, a2) = attach(&mut lab, 2, &[]);
    let held: std::net::Ipv4Addr = ip_of(&a2).parse().unwrap();
    let name2 = name_of(&lab, 2);
    // Blocks change hands while the peers share space out: wait until h0's view holds still.
    let mut st = status_ipam(&lab, 0);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let now = status_ipam(&lab, 0);
        if now == st {
            break;
        }
        st = now;
    }
    // h2's blocks, as h0 sees them.
    let blocks_of = |lab: &Lab| -> Vec<u8> {
        let report: serde_json::Value = serde_json::from_slice(&lab.weave(0, &["report"]).stdout).unwrap();
        let owners = report["ipam"]["owners"].as_array().expect("the allocator in the report").clone();
        let Some(h2) = owners.iter().find(|o| o["owner"]["name"] == name2.as_str()) else { return Vec::new() };
        let ip = |v: &serde_json::Value| v.as_str().unwrap().parse::<std::net::Ipv4Addr>().unwrap().octets()[3] / 16;
        h2["ranges"].as_array().unwrap().iter().flat_map(|r| ip(&r[0])..=ip(&r[1])).collect()
    };
    let before = blocks_of(&lab);
    assert!(before.contains(&(held.octets()[3] / 16)), "h2's address {held} is in its own blocks {before:?}");
    // (blocks, in use) on h2's line of `weave status ipam`.
    let counts = |st: &str| -> Option<(usize, usize)> {
        let l = st.lines().find(|l| l.contains(&name2) && l.contains(" blocks ("))?;
        let (_, rest) = l.split_once("): ").or_else(|| l.split_once(": "))?;
        let b = rest.split(' ').next()?.parse().ok()?;
        let a = rest.split_once(" blocks (")?.1.split(' ').next()?.parse().ok()?;
        Some((b, a))
    };
    assert!(st.contains("Reclaim: the unused space of a peer unreachable for 3s"), "{st}");
    let (b, a) = counts(&st).expect("h2 owns space");
    assert!(b == before.len() && b > a, "h2 has unused space: {st}");
    // h2 stops for good. After the grace period the voters left (two of three) take all of
    // its space but the blocks it put to use.
    assert!(lab.weave(2, &["stop"]).status.success());
    let end = Instant::now() + Duration::from_secs(30);
    let mut st = status_ipam(&lab, 0);
    while counts(&st) != Some((a, a)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(300));
        st = status_ipam(&lab, 0);
    }
    assert_eq!(counts(&st), Some((a, a)), "{st}");
    assert!(
        !st.contains(&format!("Voters: {name2}")) && !st.contains(&format!(", {name2}")),
        "h2 no longer votes: {st}"
    );
    let after = blocks_of(&lab);
    let spare = *before.iter().find(|i| !after.contains(i)).expect("a block was reclaimed");
    // Its space now serves the others: a container on h1 in a subnet that was all h2's.
    let subnet = format!("net:10.48.0.{}/28", spare * 16);
    let (_c1, a1) = attach(&mut lab, 1, &[&subnet]);
    assert!(a1.starts_with("10.48.0.") && a1.ends_with("/28"), "{a1}");
    assert_eq!(ip_of(&a1).parse::<std::net::Ipv4Addr>().unwrap().octets()[3] / 16, spare, "{a1} in {subnet}");
    // h2 comes back with its state: it keeps its container's address, and nothing is held twice.
    lab.launch_args(2, &args, &["10.201.1.1", "10.201.2.1"], Secret::None);
    let o = lab.weave(2, &["attach", &format!("netns:{c2}")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), a2, "h2's container keeps its address");
    let (c0, _) = attach(&mut lab, 0, &[]);
    assert!(lab.pings(&c0, ip_of(&a2), SETTLE), "h0's container reaches h2's");
}

#[test]
fn bad_allocation_requests_are_refused_with_what_to_do() {
    let mut lab = Lab::new(1, &[]);
    lab.launch_args(0, &["--ipalloc-range", "10.50.0.0/24"], &[], Secret::None);
    let c = format!("wc0-{}", lab.id);
    ok(&["ip", "netns", "add", &c]);
    lab.containers.push(c.clone());
    let target = format!("netns:{c}");
    let o = lab.weave(0, &["attach", "net:10.60.0.0/24", &target]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not inside the allocation range 10.50.0.0/24"), "{err}");
    let o = lab.weave(0, &["attach", "net:nonsense", &target]);
    assert!(!o.status.success(), "{o:?}");
    // Nothing was half-allocated.
    assert!(status_ipam(&lab, 0).contains("Leased here: 0"));
    // A bad range is refused at launch, and so is one over the host's own routes.
    let lab2 = Lab::new(1, &[]);
    let o = lab2.try_launch_args(0, &["--ipalloc-range", "10.0.0.0/31"], &[], Secret::None);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("too small"), "{o:?}");
    ok(&["ip", "-n", &lab2.hosts[0], "route", "add", "10.60.0.0/16", "dev", "lo"]);
    let o = lab2.try_launch_args(0, &["--ipalloc-range", "10.60.1.0/24"], &[], Secret::None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("overlaps this host's routes (10.60.0.0/16 dev lo)"), "{err}");
    assert!(lab2.weave(0, &["status"]).stderr.starts_with(b"weave: no weave router answers"), "nothing left running");
}
