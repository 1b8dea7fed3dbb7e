//! Discovery: peers that gossip names are dialled; those that do not answer rest, and come
//! back as soon as a healed partition makes them reachable again.

mod common;

use common::*;
use router_core::{Config, Duration, Event};

fn dials_to(net: &Net, from: usize, to: usize) -> usize {
    net.hosts[from].events.iter().filter(|e| matches!(e, Event::Dial { addr: a, .. } if *a == addr(to))).count()
}

#[test]
fn an_unanswering_peer_rests_after_one_dial_and_returns_when_a_partition_heals() {
    // backoff_max is 2 s here: a rest lasts 20 s.
    let mut net = Net::with_config(3, |i| Config { discovery: true, ..config(i, 4) });
    net.cut(0, 2);
    net.connect(0, 1);
    net.connect(1, 2);
    net.run_for(Duration::from_secs(9));
    // Host 0 heard of host 2 through host 1 and dialled it: once, and once more when host 2
    // became reachable (a dial before that may have found it not started yet). Then it rests;
    // host 2 did the same the other way. They reach each other through host 1.
    assert!(net.established(0, 1) && net.established(1, 2));
    assert!(!net.established(0, 2));
    let (there, back) = (dials_to(&net, 0, 2), dials_to(&net, 2, 0));
    assert!((1..=2).contains(&there) && (1..=2).contains(&back), "{there} and {back} dials");
    assert!(net.hosts[0].router.stats().discovered_rested >= 1);
    net.run_for(Duration::from_secs(3));
    assert_eq!((dials_to(&net, 0, 2), dials_to(&net, 2, 0)), (there, back), "resting addresses are left alone");

    // Host 2 is cut off from everyone, then everything heals: the moment host 2 is reachable
    // again its rest ends, and host 0 or 2 dials the other long before 20 s.
    net.cut(1, 2);
    net.run_for(Duration::from_secs(3));
    net.heal(0, 2);
    net.heal(1, 2);
    net.run_for(Duration::from_secs(4));
    assert!(net.established(0, 2) && net.established(2, 0), "the healed link is used at once");
    assert!(dials_to(&net, 0, 2) + dials_to(&net, 2, 0) >= 3);
}

/// A peer whose address was a given target is left to that target; once the operator forgets
/// the target, discovery takes the peer up again.
#[test]
fn a_forgotten_target_leaves_its_peer_to_discovery() {
    let mut net = Net::with_config(3, |i| Config { discovery: i == 0, ..config(i, 6) });
    net.cut(0, 2);
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(0, 2);
    net.run_for(Duration::from_secs(5));
    assert!(!net.established(0, 2));
    // The target waits out its backoff (up to 2 s here) when the path heals: forgotten
    // first, it never dials again.
    net.heal(0, 2);
    let before = dials_to(&net, 0, 2);
    let now = net.now;
    net.hosts[0].router.forget(now, addr(2)).unwrap();
    net.drain(0);
    net.run_for(Duration::from_secs(3));
    assert!(dials_to(&net, 0, 2) > before, "discovery dials the peer the target was for");
    assert!(net.established(0, 2));
}
