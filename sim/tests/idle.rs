//! Links carrying sparse one-way traffic over a jittery underlay cost their data, one answer
//! per watch, their heartbeats (fewer: answers stand in for them), and no per-heartbeat
//! acknowledgements over TCP.

use router_core::{Duration, Instant};
use weave_sim::{Scenario, Trace, World};

#[test]
fn sparse_traffic_over_jitter_needs_no_probes_and_no_tcp_acks() {
    let mut s = Scenario::parse(
        r#"
name = "a ring of six, a broadcast every 2 s from each host, over a jittery underlay"
duration = "200s"
[hosts]
count = 6
[underlay]
shape = "ring"
[link_classes.default]
latency = "1ms"
jitter = "2ms"
[workload]
containers_per_host = 1
ping_interval = "0s"
broadcast_interval = "2s"
"#,
    )
    .unwrap();
    s.checks.converge_within = None;
    s.checks.ping_within = None;
    let mut w = World::new(s, 7, Trace::new());
    w.run_until(Instant::from_millis(30_000));
    let (k0, links, minutes) = (w.stats.kinds, 6u64, 2);
    w.run_until(w.now + Duration::from_secs(60 * minutes));
    let k = w.stats.kinds;
    let (udp, tcp, broadcasts) = (k.udp - k0.udp, k.tcp - k0.tcp, k.work - k0.work);
    // Each broadcast crosses the five edges of its source's tree; each datagram may start a
    // watch and be answered; heartbeats go once a second per direction at most.
    let (data, beats) = (broadcasts * 5, links * 2 * 60 * minutes);
    assert!(udp <= 2 * data + beats, "{udp} datagrams for {data} data datagrams and {beats} heartbeats");
    assert!(udp >= data + beats / 4, "{udp} datagrams: heartbeats went missing");
    // TCP: a heartbeat every 10 s and a gossip summary every 30 s from each end, and nothing
    // per UDP heartbeat.
    let expected = links * 2 * (6 + 2) * minutes;
    assert!(tcp <= expected + links * 4, "{tcp} TCP segments where {expected} are due");
    let mut lost = 0;
    for h in &w.hosts {
        let st = h.router.as_ref().unwrap().stats();
        lost += st.links_lost_heartbeat + st.links_lost_ack + st.links_lost_probe;
    }
    assert_eq!(lost, 0, "no link went down");
}
