//! Path MTU in the simulator: routers find each link's limit (with ICMP feedback and through a
//! black hole), containers whose pings are too big for their path are told so and get their
//! pings through smaller, and nothing a link cannot carry is sent over it once the search has
//! settled.

use std::path::Path;

use router_core::Instant;
use weave_sim::{run, Scenario, Trace, World};

fn load(file: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(file);
    Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The payload limit each host's router settled on towards each neighbour.
fn settled(w: &mut World) -> Vec<(usize, String, u16, bool)> {
    let now = w.now;
    let mut out = Vec::new();
    for (i, h) in w.hosts.iter_mut().enumerate() {
        let st = h.router.as_mut().expect("running").status(now);
        for c in st.connections {
            out.push((i, c.nickname.unwrap_or_default(), c.pmtu, c.pmtu_verified));
        }
    }
    out
}

#[test]
fn each_link_settles_at_its_own_limit_and_big_pings_get_through_smaller() {
    let s = load("mtu-paths.toml");
    let mut w = World::new(s.clone(), 3, Trace::new());
    w.run_until(Instant::from_millis(20_000));
    for (i, peer, size, verified) in settled(&mut w) {
        let limit = match (i, peer.as_str()) {
            (1, "h2") | (2, "h1") => 1252,
            (2, "h3") | (3, "h2") => 1000,
            _ => 1472,
        };
        assert!(verified, "h{i} -> {peer} settled");
        assert!(size <= limit && size + 8 >= limit, "h{i} -> {peer}: {size} for a limit of {limit}");
    }
    // h3's container pings across the narrowest link: it was told, and its pings got through.
    let c3 = w.containers.iter().find(|c| c.host == 3).unwrap();
    assert!(c3.too_big_received > 0, "the router answered a ping too big for the path");
    assert!(c3.pmtu.values().all(|&m| m <= 1000 - 26 - 14 + 20 + 8), "{:?}", c3.pmtu);

    let (o, _) = run(&s, 3, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    assert!(o.routers.icmp_too_big_sent > 0);
    // Every ping was answered once the paths were known: none waits for good.
    assert!(o.pings.1 + 8 >= o.pings.0, "{} sent, {} answered", o.pings.0, o.pings.1);
}

#[test]
fn a_black_hole_is_found_by_probes_and_a_shrunk_link_by_the_kernels_report() {
    let s = load("mtu-blackhole-shrink.toml");
    let mut w = World::new(s.clone(), 5, Trace::new());
    w.run_until(Instant::from_millis(14_000));
    for (i, peer, size, verified) in settled(&mut w) {
        if matches!((i, peer.as_str()), (0, "h1") | (1, "h0")) {
            assert!(verified && size <= 1100 && size + 8 >= 1100, "h{i} -> {peer}: {size} through the black hole");
        }
    }
    w.run_until(Instant::from_millis(30_000));
    for (i, peer, size, verified) in settled(&mut w) {
        if matches!((i, peer.as_str()), (2, "h3") | (3, "h2")) {
            assert!(verified && size <= 900 && size + 8 >= 900, "h{i} -> {peer}: {size} after the link shrank");
        }
    }
    let (o, _) = run(&s, 5, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    assert!(o.routers.pmtu_reports > 0, "the shrunk link was reported");
}
