//! Routers wired together in memory: handshake, forwarding, relaying, failures, restarts.

mod common;

use common::*;
use proptest::prelude::*;
use router_core::{Config, ConnError, Duration, Event, LinkReason, MacOwner, RefuseReason};

const SETTLE: Duration = Duration::from_secs(3);

#[test]
fn handshake_leads_to_an_established_link_and_a_shared_view() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run_for(SETTLE);
    assert!(net.established(0, 1));
    assert!(net.established(1, 0));
    for i in 0..2 {
        let names: Vec<_> = net.hosts[i].router.peer_names().collect();
        assert_eq!(names, vec![name(0), name(1)]);
        let other = 1 - i;
        assert_eq!(net.hosts[i].router.routes().next_hop(name(other)), Some(name(other)));
        assert!(net.hosts[i].events.contains(&Event::LinkEstablished { peer: name(other) }));
    }
}

#[test]
fn a_frame_reaches_the_remote_bridge_and_the_reply_comes_back_as_learned_unicast() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run_for(SETTLE);
    let (a, b) = (mac(0, 1), mac(1, 1));
    // An ARP-like broadcast from a container on host 0 floods to host 1's bridge.
    let hello = frame(BROADCAST, a, b"who has b?");
    net.capture(0, &hello);
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[1].bridge, vec![hello]);
    // The reply goes unicast: host 1 learned that `a` lives behind host 0.
    let reply = frame(a, b, b"b is here");
    net.capture(1, &reply);
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[0].bridge, vec![reply]);
    let s1 = net.hosts[1].router.stats();
    assert_eq!((s1.frames_sent, s1.frames_flooded), (1, 0));
    let st = net.hosts[0].router.status(net.now);
    let owners: Vec<_> = st.macs.iter().map(|m| (m.mac.0, m.owner)).collect();
    assert_eq!(owners, vec![(a, MacOwner::Local), (b, MacOwner::Peer(name(1)))]);
    // A frame between two local MACs is left to the bridge.
    net.capture(0, &frame(a, a, b"self"));
    assert_eq!(net.hosts[0].router.stats().frames_local, 1);
}

#[test]
fn frames_are_relayed_when_hosts_have_no_direct_link() {
    let mut net = Net::new(3);
    net.cut(0, 2);
    net.connect(0, 1);
    net.connect(2, 1);
    net.run_for(SETTLE);
    assert_eq!(net.hosts[0].router.routes().next_hop(name(2)), Some(name(1)));
    let (a, c) = (mac(0, 1), mac(2, 1));
    let hello = frame(BROADCAST, a, b"flood");
    net.capture(0, &hello);
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[1].bridge, vec![hello.clone()]);
    assert_eq!(net.hosts[2].bridge, vec![hello]);
    let reply = frame(a, c, b"unicast via the middle");
    net.capture(2, &reply);
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[0].bridge, vec![reply]);
    assert_eq!(net.hosts[1].bridge.len(), 1, "the relay does not inject unicast for others");
    assert_eq!(net.hosts[1].router.stats().frames_relayed, 2);
}

#[test]
fn routes_move_to_the_relay_when_a_link_is_cut_and_back_when_it_heals() {
    let mut net = Net::new(3);
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(0, 2);
    net.run_for(SETTLE);
    assert_eq!(net.hosts[0].router.routes().next_hop(name(2)), Some(name(2)));
    net.cut(0, 2);
    net.run_for(SETTLE);
    assert_eq!(net.hosts[0].router.routes().next_hop(name(2)), Some(name(1)));
    assert_eq!(net.hosts[2].router.routes().next_hop(name(0)), Some(name(1)));
    let (a, c) = (mac(0, 1), mac(2, 1));
    net.capture(2, &frame(BROADCAST, c, b"learn me"));
    net.run_for(Duration::from_millis(10));
    net.capture(0, &frame(c, a, b"via 1"));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[2].bridge.len(), 1);
    net.heal(0, 2);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.hosts[0].router.routes().next_hop(name(2)), Some(name(2)));
    assert!(net.established(0, 2));
}

#[test]
#[cfg(feature = "many-routers")]
fn lazy_routes_wait_for_a_frame_and_still_route_around_a_cut() {
    let lazy = |i: usize| {
        let mut c = config(i, i as u64 + 1);
        c.lazy_routes = true;
        c
    };
    let mut net = Net::with_config(3, lazy);
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(0, 2);
    // Shorter than the anti-entropy period, which computes routes whatever happens.
    net.run_for(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(net.hosts[i].router.stats().route_recomputes, 0, "host {i} computed routes nobody used");
    }
    let (a, c) = (mac(0, 1), mac(2, 1));
    net.capture(2, &frame(BROADCAST, c, b"learn me"));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[0].bridge.len(), 1, "the flood reached host 0");
    assert_eq!(net.hosts[1].bridge.len(), 1, "the flood reached host 1");
    assert_eq!(net.hosts[2].router.stats().route_recomputes, 1, "the flooding host computed its routes once");
    net.cut(0, 2);
    net.run_for(SETTLE);
    net.capture(0, &frame(c, a, b"via 1"));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[2].bridge.len(), 1, "the unicast took the relay");
    assert_eq!(net.hosts[1].router.stats().frames_relayed, 1);
    assert_eq!(net.hosts[0].router.routes().next_hop(name(2)), Some(name(1)));
}

#[test]
fn a_restarted_peer_with_a_new_uid_is_taken_in() {
    let mut net = Net::new(3);
    net.connect(0, 1);
    net.connect(1, 2);
    net.run_for(SETTLE);
    let old_uid = net.hosts[1].router.uid();
    net.restart(1, config(1, 99));
    let new_uid = net.hosts[1].router.uid();
    assert_ne!(old_uid, new_uid);
    // Host 0 keeps redialling its target, host 1; the restarted host 1 lost its own target
    // (host 2) with its state, so it is told again, as its saved peer list would.
    net.run_for(Duration::from_secs(10));
    assert!(net.established(0, 1));
    net.connect(1, 2);
    net.run_for(Duration::from_secs(10));
    for i in 0..3 {
        let t = net.hosts[i].router.topology();
        // Either the old entry was collected while host 1 was away, or the new incarnation
        // outranked it by jumping past its version: every host ends up holding the new one.
        assert_eq!(t[&name(1)].uid, new_uid, "host {i} holds the new incarnation");
    }
    assert!(net.established(0, 1));
    assert!(net.established(2, 1));
    assert_eq!(net.hosts[0].router.routes().next_hop(name(2)), Some(name(1)));
}

#[test]
fn simultaneous_dials_resolve_to_one_connection_both_ends_agree_on() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.connect(1, 0);
    net.run_for(SETTLE);
    let s0 = net.hosts[0].router.status(net.now);
    let s1 = net.hosts[1].router.status(net.now);
    let up0: Vec<_> =
        s0.connections.iter().filter(|c| c.state == router_core::status::ConnState::Established).collect();
    let up1: Vec<_> =
        s1.connections.iter().filter(|c| c.state == router_core::status::ConnState::Established).collect();
    assert_eq!((up0.len(), up1.len()), (1, 1), "{s0:#?}\n{s1:#?}");
    // The survivor is the same TCP connection at both ends: one dialled it, the other accepted.
    assert_ne!(up0[0].outbound, up1[0].outbound);
    let refused = |h: &Host| {
        h.events.iter().any(|e| {
            matches!(
                e,
                Event::ConnectionDown {
                    reason: ConnError::Refused(RefuseReason::Duplicate)
                        | ConnError::RefusedByPeer(RefuseReason::Duplicate),
                    ..
                }
            )
        })
    };
    assert!(refused(&net.hosts[0]) && refused(&net.hosts[1]));
    // And it stays that way: the losing target does not keep redialling.
    let closes = net.hosts[0].events.len();
    net.run_for(Duration::from_secs(20));
    let later = &net.hosts[0].events[closes..];
    assert!(!later.iter().any(|e| matches!(e, Event::Dial { .. })), "{later:?}");
}

#[test]
fn udp_blocked_between_two_peers_keeps_the_link_unestablished_and_traffic_relays() {
    let mut net = Net::new(3);
    net.udp_blocked.insert((0, 2));
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(0, 2);
    net.run_for(SETTLE);
    assert!(!net.established(0, 2));
    assert_eq!(net.hosts[0].router.routes().next_hop(name(2)), Some(name(1)));
    let hello = frame(BROADCAST, mac(0, 1), b"x");
    net.capture(0, &hello);
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.hosts[2].bridge, vec![hello]);
}

/// UDP lost one way only (0 -> 1): host 1 hears nothing and keeps echoing the last of
/// host 0's heartbeats it heard. Those stale echoes must not keep host 0's sending direction
/// alive: both ends drop the link, and bring it back once the path returns.
#[test]
fn stale_echoes_do_not_keep_a_dead_direction_alive() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run_for(SETTLE);
    assert!(net.established(0, 1) && net.established(1, 0));
    net.hold = Some((0, 1));
    net.run_for(Duration::from_secs(4));
    assert!(!net.established(1, 0), "host 1 hears nothing");
    assert!(!net.established(0, 1), "host 0's direction is not proven by old echoes");
    net.hold = None;
    net.held.clear();
    net.run_for(Duration::from_secs(2));
    assert!(net.established(0, 1) && net.established(1, 0));
}

#[test]
fn connecting_to_ourselves_is_refused_and_not_retried() {
    let mut net = Net::new(1);
    net.connect(0, 0);
    net.run_for(Duration::from_secs(30));
    let st = net.hosts[0].router.status(net.now);
    assert!(st.targets[0].is_self, "{:?}", st.targets);
    let dials = net.hosts[0].events.iter().filter(|e| matches!(e, Event::Dial { .. })).count();
    assert_eq!(dials, 1);
}

#[test]
fn a_dead_peer_is_redialled_with_backoff() {
    let mut net = Net::new(2);
    net.hosts[1].up = false;
    net.connect(0, 1);
    net.run_for(Duration::from_secs(30));
    let dials = net.hosts[0].events.iter().filter(|e| matches!(e, Event::Dial { .. })).count();
    // Backoff doubles from 200 ms to 2 s with jitter: far fewer than one dial per 200 ms.
    assert!((8..=40).contains(&dials), "{dials} dials in 30 s");
    net.hosts[1].up = true;
    net.run_for(Duration::from_secs(5));
    assert!(net.established(0, 1));
}

#[test]
fn the_same_seeds_give_the_same_run() {
    let run = || {
        let mut net = Net::new(4);
        net.connect(0, 1);
        net.connect(1, 2);
        net.connect(2, 3);
        net.connect(3, 0);
        net.run_for(SETTLE);
        net.cut(0, 1);
        net.run_for(SETTLE);
        net.hosts.iter_mut().map(|h| format!("{:?}", h.events)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

fn arb_graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (2usize..=6).prop_flat_map(|n| {
        let tree = proptest::collection::vec(any::<usize>(), n - 1);
        let extra = proptest::collection::vec((0..n, 0..n), 0..n);
        (Just(n), tree, extra).prop_map(|(n, tree, extra)| {
            let mut edges: Vec<(usize, usize)> = tree.iter().enumerate().map(|(i, r)| (i + 1, r % (i + 1))).collect();
            edges.extend(extra.into_iter().filter(|(a, b)| a != b));
            (n, edges)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn once_gossip_settles_every_peer_holds_the_same_view((n, edges) in arb_graph(), seed in any::<u64>()) {
        let mut net = Net::with_config(n, |i| config(i, seed ^ i as u64));
        for &(a, b) in &edges {
            net.connect(a, b);
        }
        net.run_for(Duration::from_secs(5));
        let views: Vec<_> = net.hosts.iter().map(|h| h.router.topology().clone()).collect();
        prop_assert_eq!(views[0].len(), n);
        for v in &views[1..] {
            prop_assert_eq!(v, &views[0]);
        }
        // Every host can flood to every other.
        let hello = frame(BROADCAST, mac(0, 1), b"all");
        net.capture(0, &hello);
        net.run_for(Duration::from_millis(50));
        for h in &net.hosts[1..] {
            prop_assert_eq!(&h.bridge, &vec![hello.clone()]);
        }
    }
}

/// The types of the control messages in a tap of stream writes (4-byte length, then type).
fn control_types(tap: &[Tapped], from: usize) -> Vec<u8> {
    let mut types = Vec::new();
    for t in tap.iter().filter(|t| !t.udp && t.from == from) {
        let mut b = &t.bytes[..];
        while b.len() >= 5 {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            types.push(b[4]);
            b = &b[(4 + len).min(b.len())..];
        }
    }
    types
}

/// Once both directions are proven, each side's heartbeats echo the other's: an idle link
/// sends no per-heartbeat acknowledgement over TCP, and stays up.
#[test]
fn an_idle_established_link_proves_itself_by_echoes_without_tcp_acks() {
    const UDP_ACK: u8 = 4;
    // The default timeout (5 s) leaves room for an echo a period late; the tests' 1 s does not.
    let mut net = Net::with_config(2, |i| Config { udp_timeout: Duration::from_secs(5), ..config(i, 1) });
    net.tapping = true;
    net.connect(0, 1);
    net.run_for(SETTLE);
    assert!(net.established(0, 1) && net.established(1, 0));
    // Establishing asked for acks: they went over TCP.
    assert!(control_types(&net.tap, 1).contains(&UDP_ACK));
    net.tap.clear();
    net.run_for(Duration::from_secs(60));
    assert!(net.established(0, 1) && net.established(1, 0));
    let heartbeats = net.tap.iter().filter(|t| t.udp && t.from == 0).count();
    assert!(heartbeats >= 55, "{heartbeats} heartbeats in a minute");
    for side in 0..2 {
        let acks = control_types(&net.tap, side).iter().filter(|&&t| t == UDP_ACK).count();
        assert!(acks <= 2, "host {side} sent {acks} TCP acks for {heartbeats} heartbeats");
    }
    let events = &net.hosts[0].events;
    assert!(!events.iter().any(|e| matches!(e, Event::LinkLost { .. })), "{events:?}");
}

/// A hub's idle links beat together: its heartbeats to three neighbours go out at one
/// moment a period (one wake-up), not at three, and every link still beats every period.
#[test]
fn a_routers_idle_links_share_one_heartbeat_phase() {
    let mut net = Net::with_config(4, |i| Config { udp_timeout: Duration::from_secs(5), ..config(i, 7) });
    // Links come up a third of a period apart, so their own phases differ.
    for leaf in 1..4 {
        net.connect(0, leaf);
        net.run_for(Duration::from_millis(330));
    }
    net.run_for(SETTLE + Duration::from_secs(3));
    net.tapping = true;
    let mut slots = 0;
    let mut beats = 0;
    for _ in 0..1000 {
        net.tap.clear();
        net.run_for(Duration::from_millis(10));
        let n = net.tap.iter().filter(|t| t.udp && t.from == 0 && t.bytes[1] == 1).count();
        beats += n;
        slots += usize::from(n > 0);
    }
    assert!(beats >= 30, "{beats} heartbeats in 10 s over three links");
    assert!(slots <= 11, "heartbeats went out in {slots} separate moments in 10 s");
    for leaf in 1..4 {
        assert!(net.established(0, leaf));
    }
}

/// An idle router wakes about once a heartbeat period: every heartbeat that proves a link
/// moves its liveness deadline to the moment it would expire, so those checks do not wake
/// it on their own between beats. A link whose heartbeats stop is still lost `udp_timeout`
/// after the last one heard.
#[test]
fn an_idle_routers_liveness_checks_ride_on_its_heartbeats() {
    let (beat, timeout) = (Duration::from_secs(1), Duration::from_secs(5));
    let mut net = Net::with_config(4, |i| Config { udp_heartbeat: beat, udp_timeout: timeout, ..config(i, 7) });
    for leaf in 1..4 {
        net.connect(0, leaf);
        net.run_for(Duration::from_millis(330));
    }
    net.run_for(SETTLE + Duration::from_secs(3));
    let before = net.hosts[0].wakes;
    net.run_for(Duration::from_secs(30));
    let wakes = net.hosts[0].wakes - before;
    // 30 heartbeat moments, and where they fall between beats the TCP heartbeats (every
    // 10 s per link), anti-entropy (every 5 s here) and the gossip it sends: at most
    // 30 + 9 + 6 + 6. Checks of their own would add one per link every timeout (18 more).
    assert!(wakes <= 51, "{wakes} wake-ups in 30 s of idle links (a heartbeat period of 1 s)");
    for leaf in 1..4 {
        assert!(net.established(0, leaf));
    }

    // Leaf 1's datagrams stop reaching the hub; the hub notices at the timeout.
    net.hold = Some((1, 0));
    let mut lost = None;
    for step in 1..=200 {
        net.run_for(Duration::from_millis(50));
        if !net.established(0, 1) {
            lost = Some(Duration::from_millis(50 * step));
            break;
        }
    }
    let lost = lost.expect("the hub drops a link it hears nothing on");
    // The last heartbeat heard left leaf 1 at most a period before the hold began.
    assert!(lost > timeout - beat && lost <= timeout + Duration::from_millis(50), "lost after {lost:?}");
    let reason = net.hosts[0].events.iter().rev().find_map(|e| match e {
        Event::LinkLost { peer, reason } if *peer == name(1) => Some(*reason),
        _ => None,
    });
    assert_eq!(reason, Some(LinkReason::HeartbeatTimeout));
}

/// One-way traffic on healthy links is answered without probes: a datagram that starts a
/// watch asks its next hop for a heartbeat, the hop answers at once, and nothing more is
/// needed. A relay asks for itself; it does not pass on the previous hop's request. Unicast
/// data starts a watch every `probe_after`; floods at most once a heartbeat period per link.
#[test]
fn one_way_traffic_is_answered_by_heartbeats_without_probes() {
    const FRAMES: u8 = 2;
    const ANSWER: u8 = 0x02;
    const PROBE: u8 = 0x01;
    const HOPS: [(usize, usize); 2] = [(0, 1), (1, 2)];
    fn udp(tap: &[Tapped], from: usize, to: usize) -> impl Iterator<Item = &Tapped> {
        tap.iter().filter(move |t| t.udp && t.from == from && t.to == to)
    }
    /// Host 0 captures `n` frames to `dst`, one every `every`; only their traffic is tapped.
    fn stream(net: &mut Net, dst: [u8; 6], n: usize, every: Duration) {
        net.tap.clear();
        for i in 0..n {
            net.capture(0, &frame(dst, mac(0, 1), format!("frame {i}").as_bytes()));
            net.run_for(every);
        }
    }
    /// Each hop asked for answers a number of times within `range`, and never probed.
    fn each_hop_asks(net: &Net, range: std::ops::RangeInclusive<usize>, what: &str) {
        for (hop, next) in HOPS {
            let asked = udp(&net.tap, hop, next).filter(|t| t.bytes[1] == FRAMES && t.bytes[2] & ANSWER != 0).count();
            assert!(range.contains(&asked), "host {hop} asked for answers {asked} times in {what}");
            let probes = udp(&net.tap, hop, next).filter(|t| t.bytes[1] == 1 && t.bytes[3] & PROBE != 0).count();
            assert_eq!(probes, 0, "host {hop} probed a link that answered, in {what}");
        }
    }
    let mut net = Net::with_config(3, |i| Config { udp_timeout: Duration::from_secs(5), ..config(i, 3) });
    net.cut(0, 2);
    net.connect(0, 1);
    net.connect(1, 2);
    net.run_for(SETTLE + SETTLE);
    assert!(net.established(0, 1) && net.established(1, 2));
    let c = mac(2, 1);
    net.capture(2, &frame(BROADCAST, c, b"here I am"));
    net.run_for(Duration::from_secs(2));
    net.tapping = true;

    // Host 0 sends unicast to host 2 (through 1) every 150 ms for 15 s; hosts 1 and 2 send
    // nothing back but heartbeats. Each send comes more than `probe_after` after the last:
    // each starts a watch.
    let sends = 100;
    stream(&mut net, c, sends, Duration::from_millis(150));
    assert_eq!(net.hosts[2].bridge.len(), sends, "every frame crossed the relay");
    each_hop_asks(&net, sends..=sends, "15 s of unicast, a frame every 150 ms");
    for (hop, next) in HOPS {
        let data = udp(&net.tap, hop, next).filter(|t| t.bytes[1] == FRAMES).count();
        assert_eq!(data, sends);
        // The answers stand in for the regular heartbeats in that direction, too.
        let answers = udp(&net.tap, next, hop).filter(|t| t.bytes[1] == 1).count();
        assert!((sends..=sends + 2).contains(&answers), "host {next} sent {answers} heartbeats for {sends} requests");
    }

    // The same as floods: each link is watched about once a second.
    stream(&mut net, BROADCAST, sends, Duration::from_millis(150));
    each_hop_asks(&net, 13..=16, "15 s of floods, one every 150 ms");

    // A unicast stream denser than `probe_after` asks about once per `probe_after`.
    stream(&mut net, c, 200, Duration::from_millis(10));
    each_hop_asks(&net, 15..=25, "2 s of unicast, a frame every 10 ms");
    for (x, y) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
        assert!(net.established(x, y));
    }
}

/// An echo proves our direction up to two heartbeat periods after the last proof (the peer's
/// beat can leave just before ours arrives). When the timeout leaves no room for that, every
/// heartbeat asks for a TCP ack, so that the link is never lost between two late echoes; with
/// room to spare an idle link asks for none.
#[test]
fn heartbeats_ask_for_tcp_acks_when_an_echo_could_come_too_late() {
    const HEARTBEAT: u8 = 1;
    const ACK_REQUESTED: u8 = 0x02;
    for (timeout, all_ask) in [(2, true), (5, false)] {
        let mut net = Net::with_config(2, |i| Config { udp_timeout: Duration::from_secs(timeout), ..config(i, 9) });
        net.connect(0, 1);
        net.run_for(SETTLE + SETTLE);
        assert!(net.established(0, 1) && net.established(1, 0));
        net.tapping = true;
        net.run_for(Duration::from_secs(30));
        let beats: Vec<&Tapped> = net.tap.iter().filter(|t| t.udp && t.from == 0 && t.bytes[1] == HEARTBEAT).collect();
        let asking = beats.iter().filter(|t| t.bytes[3] & ACK_REQUESTED != 0).count();
        assert!(beats.len() >= 25, "{} heartbeats in 30 s", beats.len());
        if all_ask {
            assert_eq!(asking, beats.len(), "timeout {timeout} s: {asking} of {} heartbeats asked", beats.len());
        } else {
            assert!(asking <= 2, "timeout {timeout} s: {asking} of {} idle heartbeats asked", beats.len());
        }
        assert!(net.hosts[0].events.iter().all(|e| !matches!(e, Event::LinkLost { .. })));
    }
}
