//! The workload does what the scenario asks of it.

use router_core::Instant;
use weave_sim::{Scenario, Trace, World};

fn pings_per_container(active: &str) -> Vec<u64> {
    let mut s = Scenario::parse(&format!(
        r#"
name = "eight hosts"
duration = "10s"
[hosts]
count = 8
[workload]
ping_interval = "1s"
{active}
"#
    ))
    .unwrap();
    // Only the workload's own pings: no liveness probes.
    s.checks.converge_within = None;
    s.checks.ping_within = None;
    let mut w = World::new(s, 3, Trace::new());
    w.run_until(Instant::from_millis(10_500));
    w.containers.iter().map(|c| c.pings_sent).collect()
}

#[test]
fn a_fraction_of_active_containers_send_and_the_rest_only_answer() {
    let all = pings_per_container("");
    assert!(all.iter().all(|&n| n >= 9), "every container pings about once a second: {all:?}");
    let quarter = pings_per_container("active = 0.25");
    let senders: Vec<usize> = (0..8).filter(|&i| quarter[i] > 0).collect();
    assert_eq!(senders, vec![3, 7], "two of eight, spread evenly: {quarter:?}");
    assert!(senders.iter().all(|&i| quarter[i] >= 9));
    assert_eq!(pings_per_container("active = 0").iter().sum::<u64>(), 0);
}

#[test]
fn traffic_waits_for_its_start() {
    let late = pings_per_container("start = \"6s\"");
    // Pings at 6 s plus a phase under 1 s, then every second, up to 10.5 s: four or five each.
    assert!(late.iter().all(|&n| (4..=5).contains(&n)), "{late:?}");
}
