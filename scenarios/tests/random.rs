//! Random topologies and random fault schedules: every checker holds (proptest shrinks any
//! failure to a small case).

use proptest::prelude::*;
use weave_sim::scenario::{Dur, FaultKind, RandomFaults, Scenario, Shape};
use weave_sim::{run, Trace};

fn scenario(hosts: usize, shape: Shape, degree: usize, faults: usize, kinds: Vec<FaultKind>, loss: f64) -> Scenario {
    let text = format!(
        r#"
name = "random"
duration = "40s"
[hosts]
count = {hosts}
[underlay]
shape = "{}"
degree = {degree}
[link_classes.default]
latency = "1ms"
jitter = "2ms"
loss = {loss}
duplicate = 0.01
reorder = 0.01
[router]
backoff_max = "1s"
udp_timeout = "2s"
tcp_timeout = "6s"
tcp_heartbeat = "2s"
anti_entropy = "5s"
[workload]
containers_per_host = 2
subnets = ["10.1.0.0/24", "10.2.0.0/24"]
ping_interval = "700ms"
broadcast_interval = "3s"
cross_subnet_interval = "5s"
[checks]
converge_within = "25s"
ping_within = "15s"
"#,
        match shape {
            Shape::FullMesh => "full-mesh",
            Shape::Line => "line",
            Shape::Ring => "ring",
            Shape::Star => "star",
            Shape::Random => "random",
            Shape::Explicit => "explicit",
        }
    );
    let mut s = Scenario::parse(&text).expect("valid");
    if faults > 0 {
        s.random_faults = Some(RandomFaults {
            start: Dur("2s".parse::<Dur>().unwrap().0),
            end: Dur("15s".parse::<Dur>().unwrap().0),
            count: faults,
            kinds,
            max_outage: "4s".parse().unwrap(),
        });
    }
    s
}

fn kinds() -> impl Strategy<Value = Vec<FaultKind>> {
    proptest::sample::subsequence(
        vec![
            FaultKind::Partition,
            FaultKind::OneWay,
            FaultKind::Cut,
            FaultKind::UdpBlock,
            FaultKind::Crash,
            FaultKind::Pause,
            FaultKind::Move,
        ],
        1..=7,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_checker_holds_under_random_faults(
        hosts in 2usize..8,
        shape in prop_oneof![Just(Shape::FullMesh), Just(Shape::Line), Just(Shape::Ring), Just(Shape::Star), Just(Shape::Random)],
        degree in 2usize..4,
        faults in 0usize..6,
        kinds in kinds(),
        loss in prop_oneof![Just(0.0), Just(0.02)],
        seed in any::<u64>(),
    ) {
        let s = scenario(hosts, shape, degree, faults, kinds, loss);
        let (o, _) = run(&s, seed, Trace::new());
        if let Some(v) = o.first_failure() {
            let file = weave_sim::explore::materialise(&s, seed).to_toml();
            prop_assert!(false, "[{}] at {}: {}\nscenario (seed {seed}):\n{file}", v.check, v.at, v.detail);
        }
    }
}
