//! The checkers catch what they claim to catch.

use router_core::{Instant, Mac, Stats};
use weave_sim::check::Checker;
use weave_sim::lan::{Container, Ids, Received};
use weave_sim::scenario::Subnet;
use weave_sim::{run, Scenario, Trace};

const LINE: &str = r#"
name = "line with a short hop limit"
duration = "20s"
[hosts]
count = 5
[underlay]
shape = "line"
[workload]
ping_interval = "300ms"
[checks]
converge_within = "5s"
ping_within = "5s"
"#;

#[test]
fn a_hop_limit_too_short_for_the_line_fails_the_ping_check() {
    let ok = Scenario::parse(LINE).unwrap();
    assert!(run(&ok, 1, Trace::new()).0.passed());
    let short = Scenario::parse(&LINE.replace("[workload]", "[router]\nhop_limit = 2\n[workload]")).unwrap();
    let (o, _) = run(&short, 1, Trace::new());
    let v = o.first_failure().expect("the ends cannot reach each other");
    assert_eq!(v.check, "ping");
    assert!(o.routers.drops.get(router_core::DropReason::HopLimit) > 0);
}

fn container() -> Container {
    let sn = Subnet::parse("10.1.0.0/24").unwrap();
    Container::new("h0/c0".into(), Mac([2, 0, 0, 0, 0, 1]), sn.host(1), sn, 0)
}

#[test]
fn a_second_delivery_of_one_frame_is_a_violation() {
    let s = Scenario::parse(LINE).unwrap();
    let mut c = Checker::new(&s);
    let mut ids = Ids::default();
    let ct = container();
    let mut other = container();
    other.mac = Mac([2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    other.broadcast(&mut ids, &mut out);
    let f = out.pop().unwrap();
    c.on_container(Instant::ZERO, 0, &ct, &f, Received::Ignored);
    assert!(!c.stopped());
    c.on_container(Instant::ZERO, 0, &ct, &f, Received::Ignored);
    assert_eq!(c.violations[0].check, "deliver-once");
}

#[test]
fn a_unicast_frame_for_someone_else_is_a_violation_unless_flooded() {
    let s = Scenario::parse(LINE).unwrap();
    let ct = container();
    let mut ids = Ids::default();
    let mut sender = container();
    sender.mac = Mac([2, 0, 0, 0, 0, 3]);
    // A gratuitous ARP is broadcast; rewrite it as unicast to a third MAC.
    let mut f = sender.gratuitous_arp(&mut ids);
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    let mut c = Checker::new(&s);
    c.on_flood(Instant::ZERO, &f);
    c.on_container(Instant::ZERO, 0, &ct, &f, Received::Ignored);
    assert!(!c.stopped(), "flooded unknown unicast may reach anyone");
    let mut c = Checker::new(&s);
    c.on_container(Instant::ZERO, 0, &ct, &f, Received::Ignored);
    assert_eq!(c.violations[0].check, "right-container");
}

#[test]
fn a_frame_nobody_accounts_for_is_a_violation() {
    let s = Scenario::parse(LINE).unwrap();
    let mut c = Checker::new(&s);
    let before = Stats::default();
    let mut after = before;
    after.frames_flooded += 1;
    c.on_capture_accounting(Instant::ZERO, 0, &before, &after);
    assert!(!c.stopped());
    c.on_capture_accounting(Instant::ZERO, 0, &before, &before);
    assert_eq!(c.violations[0].check, "accounted");
    let mut c = Checker::new(&s);
    c.on_datagram_accounting(Instant::ZERO, 0, 3, &before, &after);
    assert_eq!(c.violations[0].check, "accounted", "one of three frames accounted");
}
