//! Late joiners, one-way UDP blocks, link classes that change over time, checks turned off
//! and bounds on what routers send do what the scenario says.

use router_core::status::ConnState;
use router_core::Instant;
use weave_sim::world::peer_name;
use weave_sim::{run, Scenario, Trace, World};

fn late_joiner() -> Scenario {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/late-joiner.toml")).unwrap();
    Scenario::parse(&text).unwrap()
}

fn link_up(w: &mut World, a: usize, b: u32) -> bool {
    let now = w.now;
    let st = w.hosts[a].router.as_mut().expect("running").status(now);
    st.connections.iter().any(|c| c.peer == Some(peer_name(b)) && c.state == ConnState::Established)
}

#[test]
fn the_late_joiner_waits_and_the_one_way_block_takes_the_link_down() {
    let mut w = World::new(late_joiner(), 1, Trace::new());
    w.run_until(Instant::from_millis(3_000));
    assert!(link_up(&mut w, 2, 3), "h2-h3 is up before the block");
    w.run_until(Instant::from_millis(11_000));
    assert!(w.hosts[5].router.is_none(), "h5 has not started");
    assert!(!link_up(&mut w, 2, 3) && !link_up(&mut w, 3, 2), "UDP lost one way takes the link down");
    let lost = w.stats.net_drops.iter().find(|(k, _)| format!("{k:?}") == "Loss").map_or(0, |(_, v)| *v);
    assert!(lost > 0, "the lossy class is in force on h0-h1");
    w.run_until(Instant::from_millis(13_000));
    assert!(w.hosts[5].router.is_some(), "h5 started at 12 s");
    w.run_until(Instant::from_millis(25_000));
    assert!(link_up(&mut w, 2, 3), "h2-h3 is back after the unblock");
}

#[test]
fn a_check_turned_off_is_not_judged() {
    let text = r#"
name = "a line too long for its hop limit"
duration = "10s"
[hosts]
count = 5
[underlay]
shape = "line"
[router]
hop_limit = 2
[workload]
ping_interval = "300ms"
[checks]
converge_within = "5s"
ping_within = "3s"
"#;
    let s = Scenario::parse(text).unwrap();
    let (o, _) = run(&s, 1, Trace::new());
    assert_eq!(o.first_failure().map(|v| v.check), Some("ping"), "the ends cannot reach each other");
    let s = Scenario::parse(&text.replace("[checks]", "[checks]\nskip = [\"ping\"]")).unwrap();
    let (o, _) = run(&s, 1, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    assert!(o.converged_after.is_some(), "the other checks still run");
}

/// Isolation between subnets is by addressing: a container that sends straight to a MAC in
/// another subnet (a static neighbour entry) gets through, and the subnet-isolation check
/// says so. Without it the check would have nothing to catch.
#[test]
fn a_container_crossing_subnets_is_caught_by_the_isolation_check() {
    let text = r#"
name = "two subnets, one container crosses"
duration = "10s"
[hosts]
count = 2
[workload]
containers_per_host = 2
subnets = ["10.32.0.0/24", "10.40.0.0/24"]
ping_interval = "300ms"
cross_subnet_interval = "500ms"
[[hostile]]
container = "h0/c0"
kind = "cross-subnet"
rate = 10
start = "3s"
end = "6s"
"#;
    let s = Scenario::parse(text).unwrap();
    let (o, _) = run(&s, 1, Trace::new());
    let v = o.first_failure().expect("the crossing is seen");
    assert_eq!(v.check, "subnet-isolation", "{v:?}");
    assert!(v.at >= Instant::from_millis(3_000), "not before the container misbehaves: {v:?}");
    let (calm, _) = run(
        &Scenario::parse(&text.replace("kind = \"cross-subnet\"", "kind = \"broadcast-storm\"")).unwrap(),
        1,
        Trace::new(),
    );
    assert!(calm.passed(), "well-behaved containers never cross (they only try, by ARP): {:?}", calm.first_failure());
}

/// The link-change bound counts what the first host's router saw: h2's link with h3 comes up,
/// goes down under the one-way block and comes back; a bound of 2 fails.
#[test]
fn a_link_that_changes_more_than_allowed_fails_the_bound() {
    let (o, _) = run(&late_joiner(), 1, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    assert_eq!(o.link_changes[0].changes, 3);
    let mut s = late_joiner();
    s.checks.link_changes[0].max = 2;
    let (o, _) = run(&s, 1, Trace::new());
    assert_eq!(o.first_failure().map(|v| v.check), Some("link-changes"), "{:?}", o.first_failure());
}

/// The volume bounds judge the busiest router: the late joiner's run passes bounds set at what
/// its routers sent, and fails bounds one below.
#[test]
fn a_router_that_sends_more_than_allowed_fails_the_volume_bound() {
    let (o, _) = run(&late_joiner(), 1, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    let v = o.volume;
    assert!(v.gossip_bytes_max > 0 && v.gossip_bytes_mean <= v.gossip_bytes_max);
    assert!(v.dials_max > 0 && v.dials_mean <= v.dials_max);
    let mut s = late_joiner();
    (s.checks.gossip_bytes_max, s.checks.dials_max) = (Some(v.gossip_bytes_max), Some(v.dials_max));
    let (o, _) = run(&s, 1, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    for (gossip, dials) in [(v.gossip_bytes_max - 1, v.dials_max), (v.gossip_bytes_max, v.dials_max - 1)] {
        (s.checks.gossip_bytes_max, s.checks.dials_max) = (Some(gossip), Some(dials));
        let (o, _) = run(&s, 1, Trace::new());
        assert_eq!(o.first_failure().map(|v| v.check), Some("volume"), "{:?}", o.first_failure());
    }
}
