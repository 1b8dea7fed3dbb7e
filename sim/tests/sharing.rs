//! Routers of one simulated world share one copy of each peer entry: the memory of a large
//! simulation grows with the number of distinct entries, not with routers times peers.

use std::sync::Arc;

use router_core::Instant;
use weave_sim::{Scenario, Trace, World};

#[test]
fn converged_routers_hold_the_same_copy_of_every_entry() {
    let s = Scenario::parse(
        r#"
name = "ring of 12"
duration = "30s"
[hosts]
count = 12
[underlay]
shape = "ring"
[router]
connect = "underlay"
"#,
    )
    .unwrap();
    let mut w = World::new(s, 5, Trace::new());
    w.run_until(Instant::from_millis(20_000));
    let views: Vec<_> = w.hosts.iter().map(|h| h.router.as_ref().expect("running").topology().clone()).collect();
    assert_eq!(views[0].len(), 12, "the ring converged");
    for v in &views[1..] {
        assert_eq!(v, &views[0], "every router holds the same view");
        for e in v.values() {
            assert!(Arc::ptr_eq(e, &views[0][&e.name]), "{}: a router holds its own copy of a shared entry", e.name);
        }
        assert!(v.shares_leaves_with(&views[0]), "a router holds its own copy of a shared part of the view");
    }
    // Equal views share one route graph; each router's own next hops differ.
    let first = w.hosts[0].router.as_mut().unwrap().routes().clone();
    for h in 1..w.hosts.len() {
        let r = w.hosts[h].router.as_mut().unwrap().routes();
        assert!(r.shares_graph_with(&first), "host {h} built its own graph of an equal view");
        assert_eq!(r.distance(weave_sim::world::peer_name(h as u32)), Some(0));
    }
}
