//! Control connections carry what a router writes in one go in one latency: messages are
//! pipelined as TCP would, not delivered one per round trip.

use std::collections::BTreeMap;

use router_core::Instant;
use weave_sim::{Scenario, Trace, World};

#[test]
fn messages_written_together_arrive_together_one_latency_later() {
    let s = Scenario::parse(
        r#"
name = "two hosts 100 ms apart"
duration = "3s"
[hosts]
count = 2
[link_classes.default]
latency = "100ms"
[router]
connect = "underlay"
[workload]
containers_per_host = 1
subnets = ["10.0.0.0/8"]
ping_interval = "0s"
"#,
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!("weave-sim-streams-{}.jsonl", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let mut w = World::new(s, 1, Trace::new().with_file(file));
    w.run_until(Instant::from_millis(3_000));
    let converged = w.hosts.iter().all(|h| h.router.as_ref().unwrap().topology().len() == 2);
    drop(w);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(converged, "the two hosts learned each other");
    // Deliveries per (time, from, to): a burst of messages (the handshake's last step, our
    // entry, a summary) arrives at one instant.
    let mut at: BTreeMap<(u64, u64, u64), usize> = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains(r#""ev":"tcp""#)) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (v["t"].as_u64().unwrap(), v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
        *at.entry(key).or_default() += 1;
    }
    assert!(at.len() > 5, "control traffic flowed both ways: {at:?}");
    let burst = at.values().copied().max().unwrap();
    assert!(burst >= 3, "messages written together were spread one latency apart: {at:?}");
    // The first message leaves once the SYN has arrived (100 ms) and takes a latency itself:
    // nothing arrives before 200 ms.
    assert!(at.keys().all(|&(t, _, _)| t >= 200_000), "a message beat the latency: {at:?}");
}
