//! A hostile container cannot take the MAC table or the flood path: one sending from thousands
//! of random source MACs fills its owner's share and the newcomers' flood budget, the others'
//! MACs are still learned, their broadcasts still flood and their unicast frames still go
//! straight to their peer.

mod common;

use common::*;
use router_core::{DropReason, Duration};

#[test]
fn a_mac_flood_fills_one_share_and_the_others_still_learn_and_reach() {
    let mut net = Net::with_config(2, |i| {
        let mut c = config(i, i as u64 + 1);
        c.mac_per_peer_max = 100;
        c
    });
    net.connect(0, 1);
    net.run_for(Duration::from_secs(3));
    assert!(net.established(0, 1));
    // A well-behaved container on host 0 is learned before the flood.
    let (good0, good1) = (mac(0, 1), mac(1, 1));
    net.capture(0, &frame(BROADCAST, good0, b"hello"));
    // Host 0's hostile container floods 5,000 random source MACs.
    for n in 0..5000u32 {
        let src = [0x02, 0xee, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0x01];
        net.capture(0, &frame(BROADCAST, src, b"flood"));
    }
    net.run_for(Duration::from_millis(50));
    let (s0, s1) = (*net.hosts[0].router.stats(), *net.hosts[1].router.stats());
    assert!(
        s0.macs_learned <= 100 && s0.macs_refused >= 4900,
        "host 0: {} learned, {} refused",
        s0.macs_learned,
        s0.macs_refused
    );
    // Beyond the newcomers' burst (a tenth of a second's budget), the flood went nowhere.
    let limited = s0.drops.get(DropReason::FloodLimited);
    assert!(limited >= 4800, "host 0 dropped {limited}");
    assert!(s1.frames_injected <= 200 && s1.macs_learned <= 200, "host 1: {s1:?}");
    // The well-behaved container still floods, from its own budget.
    net.hosts[1].bridge.clear();
    net.capture(0, &frame(BROADCAST, good0, b"still here"));
    net.run_for(Duration::from_millis(20));
    assert!(net.hosts[1].bridge.iter().any(|f| f.ends_with(b"still here")), "its broadcast arrives");
    // A well-behaved container on host 1 is learned on both sides; unicast to it is sent, not
    // flooded.
    net.capture(1, &frame(BROADCAST, good1, b"hello"));
    net.run_for(Duration::from_millis(20));
    let flooded = net.hosts[0].router.stats().frames_flooded;
    net.hosts[1].bridge.clear();
    net.capture(0, &frame(good1, good0, b"to you"));
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[0].router.stats().frames_flooded, flooded, "unicast, not a flood");
    assert_eq!(net.hosts[0].router.stats().frames_sent, s0.frames_sent + 1);
    assert!(net.hosts[1].bridge.iter().any(|f| f[..6] == good1), "delivered");
}
