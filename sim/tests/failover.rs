//! Fast failure detection: a silently dead link is routed around in under a second while
//! traffic flows, the direct link returns within two seconds of healing, a lossy link does
//! not flap, and a flapping link is held back (hysteresis) while traffic keeps flowing.

use router_core::{Duration, Instant};
use weave_sim::scenario::FaultAction;
use weave_sim::world::peer_name;
use weave_sim::{Scenario, Trace, World};

/// Pings every 50 ms from each container.
const PINGS: &str = "ping_interval = \"50ms\"";
/// Broadcasts every 50 ms from each container, and no pings.
const BROADCASTS: &str = "ping_interval = \"0s\"\nbroadcast_interval = \"50ms\"";

fn mesh(extra: &str) -> Scenario {
    mesh_with(PINGS, extra)
}

fn mesh_with(traffic: &str, extra: &str) -> Scenario {
    Scenario::parse(&format!(
        r#"
name = "three hosts, full mesh, traffic everywhere"
duration = "60s"
[hosts]
count = 3
[workload]
containers_per_host = 1
{traffic}
{extra}
[checks]
converge_within = "10s"
ping_within = "10s"
"#
    ))
    .unwrap()
}

/// Runs in 10 ms steps until `cond` holds; returns how long it took.
fn until(w: &mut World, limit: Duration, mut cond: impl FnMut(&mut World) -> bool) -> Option<Duration> {
    let start = w.now;
    while w.now - start <= limit {
        if cond(w) {
            return Some(w.now - start);
        }
        let next = w.now + Duration::from_millis(10);
        w.run_until(next);
    }
    None
}

/// Cuts h0–h1 silently (the direct path is first checked) and returns how long until both
/// ends route to each other through h2.
fn fail_over(w: &mut World) -> Duration {
    assert_eq!(via(w, 0, 1), Some(peer_name(1)), "direct before the fault");
    w.apply(FaultAction::Cut { a: "h0".into(), b: "h1".into() });
    let failover =
        until(w, Duration::from_secs(6), |w| via(w, 0, 1) == Some(peer_name(2)) && via(w, 1, 0) == Some(peer_name(2)))
            .expect("routes move to the relay");
    println!("failover after {failover:?}");
    failover
}

fn via(w: &mut World, from: usize, to: u32) -> Option<router_core::PeerName> {
    w.hosts[from].router.as_mut().unwrap().routes().next_hop(peer_name(to))
}

#[test]
fn a_silently_dead_link_is_routed_around_in_under_a_second_and_comes_back_within_two() {
    let mut w = World::new(mesh(""), 1, Trace::new());
    w.run_until(Instant::from_millis(10_000));
    let failover = fail_over(&mut w);
    assert!(failover < Duration::from_secs(1), "failover took {failover:?}");
    let st = w.hosts[0].router.as_mut().unwrap().status(w.now);
    let conn = st.connections.iter().find(|c| c.peer == Some(peer_name(1))).expect("the TCP connection survives");
    let last = conn.link_changes.last().expect("the change is recorded");
    assert!(!last.established && last.reason == router_core::LinkReason::ProbeTimeout, "{last:?}");

    w.run_until(w.now + Duration::from_secs(5));
    w.apply(FaultAction::Repair { a: "h0".into(), b: "h1".into() });
    let back = until(&mut w, Duration::from_secs(5), |w| {
        via(w, 0, 1) == Some(peer_name(1)) && via(w, 1, 0) == Some(peer_name(0))
    })
    .expect("the direct link comes back");
    println!("back on the direct link after {back:?}");
    assert!(back < Duration::from_secs(2), "recovery took {back:?}");
    assert!(w.checker.violations.is_empty(), "{:?}", w.checker.violations);
}

/// A link that carries only floods is watched once a second: when it dies silently, routes
/// move within two seconds (not the five of the heartbeat timeout).
#[test]
fn a_silently_dead_link_carrying_only_broadcasts_is_routed_around_within_two_seconds() {
    let mut w = World::new(mesh_with(BROADCASTS, ""), 2, Trace::new());
    w.run_until(Instant::from_millis(10_000));
    let failover = fail_over(&mut w);
    assert!(failover < Duration::from_secs(2), "failover took {failover:?}");
    assert!(w.checker.violations.is_empty(), "{:?}", w.checker.violations);
}

#[test]
fn a_link_with_thirty_percent_loss_does_not_flap_and_traffic_keeps_flowing() {
    let s = mesh("[link_classes.lossy]\nloss = 0.3\n[[links]]\na = \"h0\"\nb = \"h1\"\nclass = \"lossy\"\n");
    let mut w = World::new(s, 3, Trace::new());
    w.run_until(Instant::from_millis(60_000));
    let lost: u64 = w
        .hosts
        .iter()
        .map(|h| {
            let s = h.router.as_ref().unwrap().stats();
            s.links_lost_probe + s.links_lost_heartbeat + s.links_lost_ack
        })
        .sum();
    assert_eq!(lost, 0, "the lossy link never went down");
    let (sent, answered) = w.containers.iter().fold((0, 0), |(s, a), c| (s + c.pings_sent, a + c.pings_answered));
    // Pings across the lossy link lose about half their round trips; the others lose none.
    assert!(answered * 10 >= sent * 6, "{answered} of {sent} pings answered");
    assert!(w.checker.violations.is_empty(), "{:?}", w.checker.violations);
}

#[test]
fn a_flapping_link_is_held_back_and_traffic_keeps_flowing() {
    let mut w = World::new(mesh(""), 5, Trace::new());
    w.run_until(Instant::from_millis(10_000));
    let ups = |w: &World| w.hosts[0].router.as_ref().unwrap().stats().links_established;
    let before = ups(&w);
    let flaps = 8;
    for _ in 0..flaps {
        w.apply(FaultAction::Cut { a: "h0".into(), b: "h1".into() });
        w.run_until(w.now + Duration::from_secs(2));
        w.apply(FaultAction::Repair { a: "h0".into(), b: "h1".into() });
        w.run_until(w.now + Duration::from_secs(2));
    }
    let comebacks = ups(&w) - before;
    assert!(
        comebacks < flaps,
        "hysteresis holds a flapping link back: it came back {comebacks} times in {flaps} flaps"
    );
    let (sent, answered) = w.containers.iter().fold((0, 0), |(s, a), c| (s + c.pings_sent, a + c.pings_answered));
    assert!(answered * 100 >= sent * 90, "{answered} of {sent} pings answered through the flapping");
    // Once the link is stable it is used again.
    let back = until(&mut w, Duration::from_secs(20), |w| via(w, 0, 1) == Some(peer_name(1)));
    assert!(back.is_some(), "a stable link returns");
    assert!(w.checker.violations.is_empty(), "{:?}", w.checker.violations);
}

#[test]
fn an_idle_link_costs_at_most_one_heartbeat_per_second_each_way() {
    let s = Scenario::parse(
        r#"
name = "idle"
duration = "120s"
[hosts]
count = 3
[workload]
containers_per_host = 0
"#,
    )
    .unwrap();
    let mut w = World::new(s, 1, Trace::new());
    w.run_until(Instant::from_millis(20_000));
    let sent = |w: &World| w.hosts.iter().map(|h| h.router.as_ref().unwrap().stats().datagrams_sent).sum::<u64>();
    let before = sent(&w);
    w.run_until(Instant::from_millis(80_000));
    let per_direction_per_second = (sent(&w) - before) as f64 / 60.0 / 6.0; // 3 links, 2 directions
    println!("idle: {per_direction_per_second:.2} datagrams per second per link direction");
    assert!(per_direction_per_second <= 1.0, "{per_direction_per_second}");
}
