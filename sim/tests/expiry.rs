//! MAC entries that fall idle expire on time and are learned again when their owners speak,
//! while traffic keeps flowing.

use router_core::Duration;
use weave_sim::{run, Scenario, Trace};

#[test]
fn idle_mac_entries_expire_within_a_tenth_of_the_expiry_time_and_pings_keep_working() {
    // Every router learns every container's MAC from its broadcasts; only the routers on a
    // ping's path hear from it between broadcasts, so the others' entries fall idle.
    let s = Scenario::parse(
        r#"
name = "MAC entries expiring between broadcasts"
duration = "1000s"
[hosts]
count = 12
[underlay]
shape = "random"
degree = 3
[workload]
containers_per_host = 1
ping_interval = "5s"
broadcast_interval = "250s"
[router]
mac_expiry = "100s"
"#,
    )
    .unwrap();
    let (o, mut w) = run(&s, 3, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    let (sent, answered) = o.pings;
    assert!(sent > 1000 && answered == sent, "{answered} of {sent} pings answered");
    let (learned, expired) = (o.routers.macs_learned, o.routers.macs_expired);
    assert!(expired >= 30, "{expired} entries expired");
    // Each router first learns the 12 containers' MACs; most expired entries come back.
    assert!(learned >= 12 * 12 + expired / 2, "{learned} entries learned, {expired} expired");
    let (now, expiry) = (w.now, Duration::from_secs(100));
    for h in &mut w.hosts {
        let st = h.router.as_mut().expect("no host crashed").status(now);
        for m in &st.macs {
            assert!(now - m.last_seen <= expiry + expiry / 10, "{} idle since {:?} at {now:?}", h.name, m.last_seen);
        }
    }
}
