//! Path MTU: routers find the largest datagram each link carries, size frames for whole
//! paths, answer frames too big for them with ICMP (or fragment them), and never panic on a
//! frame of any length.

mod common;

use common::*;
use etherparse::{Icmpv4Type, Icmpv6Type, Ipv4Header, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use router_core::{DropReason, Duration, Instant};

const SETTLE: Duration = Duration::from_secs(8);

/// A UDP/IPv4 frame of `len` bytes in all from `src` to `dst`, with or without DF.
fn ipv4_frame(dst: [u8; 6], src: [u8; 6], len: usize, df: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst).ipv4([10, 32, 0, 1], [10, 32, 0, 2], 64).udp(4000, 5000);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x5a; len - 14 - 20 - 8]).unwrap();
    let (mut h, _) = Ipv4Header::from_slice(&out[14..]).unwrap();
    h.dont_fragment = df;
    out[14..34].copy_from_slice(&h.to_bytes());
    out
}

/// The payload limit host `i` uses towards `peer`, and whether it is verified.
fn pmtu(net: &mut Net, i: usize, peer: usize) -> (u16, bool) {
    let now = net.now;
    let st = net.hosts[i].router.status(now);
    let c = st.connections.iter().find(|c| c.peer == Some(name(peer))).expect("a connection");
    (c.pmtu, c.pmtu_verified)
}

/// Teaches host `at`'s router that `m` lives behind host `host` (a frame from it arrives).
fn learn(net: &mut Net, host: usize, m: [u8; 6]) {
    net.capture(host, &frame(BROADCAST, m, b"hello"));
    net.run_for(Duration::from_millis(20));
}

/// Two hosts over a link of IP MTU `mtu`, settled, with host 1's container known to host 0;
/// both bridges empty. Returns the network and the two containers' MACs.
fn narrow_pair(mtu: usize) -> (Net, [u8; 6], [u8; 6]) {
    let mut net = Net::new(2);
    net.set_mtu(0, 1, mtu);
    net.connect(0, 1);
    net.run_for(SETTLE);
    let (a, b) = (mac(0, 1), mac(1, 1));
    learn(&mut net, 1, b);
    net.hosts[0].bridge.clear();
    net.hosts[1].bridge.clear();
    (net, a, b)
}

#[test]
fn a_narrow_link_is_found_and_settles_within_the_precision() {
    let mut net = Net::new(2);
    net.set_mtu(0, 1, 1308);
    net.connect(0, 1);
    net.run_for(SETTLE);
    for (i, j) in [(0, 1), (1, 0)] {
        let (size, verified) = pmtu(&mut net, i, j);
        assert!(verified, "h{i} settled");
        assert!((1272..=1280).contains(&size), "h{i}: {size} (the link carries 1280 bytes of UDP payload)");
    }
    // Gossip carries it: each side's entry advertises the verified size.
    let view = net.hosts[1].router.topology().clone();
    let advertised = view[&name(0)].conns.iter().find(|c| c.peer == name(1)).and_then(|c| c.mtu);
    assert_eq!(advertised, Some(pmtu(&mut net, 0, 1).0));
}

#[test]
fn an_unconstrained_link_settles_at_the_ceiling_in_one_round() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run_for(SETTLE);
    assert_eq!(pmtu(&mut net, 0, 1), (1472, true));
    let st = net.hosts[0].router.status(net.now);
    assert!(st.stats.pmtu_probes_sent <= 2, "{} probes", st.stats.pmtu_probes_sent);
}

#[test]
fn a_df_frame_too_big_for_the_path_is_answered_with_fragmentation_needed() {
    let (mut net, a, b) = narrow_pair(1308);
    let (size, _) = pmtu(&mut net, 0, 1);
    let max_frame = usize::from(size) - 24 - 2;
    // Fits: it crosses.
    net.capture(0, &ipv4_frame(b, a, max_frame, true));
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[1].bridge.len(), 1, "a frame that fits crosses");
    // One byte more: an ICMP error goes back, and nothing crosses.
    net.capture(0, &ipv4_frame(b, a, max_frame + 1, true));
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[1].bridge.len(), 1, "nothing too big crosses");
    let icmp = net.hosts[0].bridge.pop().expect("an ICMP error on the sender's bridge");
    assert_eq!(&icmp[..6], &a);
    let p = SlicedPacket::from_ethernet(&icmp).unwrap();
    let Some(TransportSlice::Icmpv4(i)) = &p.transport else { panic!("ICMP") };
    let Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu,
    }) = i.icmp_type()
    else {
        panic!("fragmentation needed: {:?}", i.icmp_type())
    };
    assert_eq!(usize::from(next_hop_mtu), max_frame - 14, "the largest IP packet the path takes");
    let st = net.hosts[0].router.status(net.now);
    assert_eq!(st.stats.icmp_too_big_sent, 1);
}

#[test]
fn without_df_the_router_fragments_and_the_pieces_cross() {
    let (mut net, a, b) = narrow_pair(1028);
    let f = ipv4_frame(b, a, 3000, false);
    net.capture(0, &f);
    net.run_for(Duration::from_millis(20));
    let got = &net.hosts[1].bridge;
    assert!(got.len() >= 3, "{} fragments", got.len());
    let mut data = Vec::new();
    for g in got {
        let (h, rest) = Ipv4Header::from_slice(&g[14..]).unwrap();
        assert_eq!(usize::from(h.fragment_offset.byte_offset()), data.len());
        data.extend_from_slice(&rest[..usize::from(h.total_len) - h.header_len()]);
    }
    assert_eq!(&data[..], &f[34..], "the fragments carry the whole packet");
}

#[test]
fn a_narrow_middle_link_limits_the_whole_relayed_path() {
    // 0 - 1 - 2, where 1 - 2 is narrower than 0 - 1: host 0 sizes frames for the path.
    let mut net = Net::new(3);
    net.set_mtu(1, 2, 1028);
    net.connect(0, 1);
    net.connect(1, 2);
    net.run_for(SETTLE * 2);
    let (a, c) = (mac(0, 1), mac(2, 1));
    learn(&mut net, 2, c);
    net.hosts[0].bridge.clear();
    net.hosts[2].bridge.clear();
    let narrow = pmtu(&mut net, 1, 2).0;
    assert!(narrow <= 1000, "{narrow}");
    let max_frame = usize::from(narrow) - 26;
    net.capture(0, &ipv4_frame(c, a, max_frame, true));
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[2].bridge.len(), 1, "a frame sized for the path crosses both links");
    net.capture(0, &ipv4_frame(c, a, max_frame + 100, true));
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[2].bridge.len(), 1);
    let icmp = net.hosts[0].bridge.pop().expect("the sender is told");
    let p = SlicedPacket::from_ethernet(&icmp).unwrap();
    let Some(NetSlice::Ipv4(_)) = &p.net else { panic!("IPv4") };
}

#[test]
fn ipv6_gets_packet_too_big_and_broadcasts_are_dropped_and_counted() {
    let (mut net, a, b) = narrow_pair(1428);
    let v6 = PacketBuilder::ethernet2(a, b).ipv6([0xfd; 16], [0xfe; 16], 64).udp(1, 2);
    let mut f = Vec::new();
    v6.write(&mut f, &[1u8; 1500]).unwrap();
    net.capture(0, &f);
    net.run_for(Duration::from_millis(20));
    let icmp = net.hosts[0].bridge.pop().expect("packet too big");
    let p = SlicedPacket::from_ethernet(&icmp).unwrap();
    let Some(TransportSlice::Icmpv6(i)) = &p.transport else { panic!("ICMPv6") };
    assert!(matches!(i.icmp_type(), Icmpv6Type::PacketTooBig { mtu } if mtu >= 1280));

    let before = net.hosts[0].router.stats().drops.get(DropReason::TooBig);
    net.capture(0, &ipv4_frame(BROADCAST, a, 1500, true));
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.hosts[0].router.stats().drops.get(DropReason::TooBig), before + 1);
    assert!(net.hosts[0].bridge.is_empty(), "a broadcast is never answered");
}

#[test]
fn a_reported_smaller_mtu_applies_at_once_and_is_verified() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run_for(SETTLE);
    assert_eq!(pmtu(&mut net, 0, 1), (1472, true));
    // The path narrows; the kernel tells the driver, the driver tells the router.
    net.set_mtu(0, 1, 1200);
    let now = net.now;
    net.hosts[0].router.handle_path_mtu(now, addr(1), 1200);
    assert_eq!(pmtu(&mut net, 0, 1), (1172, false), "sized below the report at once");
    net.run_for(SETTLE);
    let (size, verified) = pmtu(&mut net, 0, 1);
    assert!(verified && (1164..=1172).contains(&size), "{size}");
    // A report that would raise it changes nothing.
    let now = net.now;
    net.hosts[0].router.handle_path_mtu(now, addr(1), 9000);
    assert_eq!(pmtu(&mut net, 0, 1).0, size);
}

#[test]
fn a_path_that_shrinks_during_the_run_is_found_again_at_the_recheck() {
    let mut c0 = config(0, 1);
    c0.pmtu_recheck = Duration::from_secs(20);
    let mut net = Net::with_config(2, |i| if i == 0 { c0.clone() } else { config(i, 2) });
    net.connect(0, 1);
    net.run_for(SETTLE);
    assert_eq!(pmtu(&mut net, 0, 1).0, 1472);
    // A black hole for large datagrams, with no ICMP: only the recheck can tell.
    net.set_mtu(0, 1, 1100);
    net.run_for(Duration::from_secs(30));
    let (size, verified) = pmtu(&mut net, 0, 1);
    assert!(verified && size <= 1072, "{size}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Frames of every length, to a known MAC behind a narrow link, unicast and flooded:
    /// never a panic, and every frame is sent, answered, fragmented or counted.
    #[test]
    fn frames_of_any_length_never_panic(lens in proptest::collection::vec(0usize..70_000, 1..24)) {
        let mut net = Net::new(2);
        net.set_mtu(0, 1, 1308);
        net.connect(0, 1);
        net.run_for(SETTLE);
        let (a, b) = (mac(0, 1), mac(1, 1));
        learn(&mut net, 1, b);
        for (k, len) in lens.into_iter().enumerate() {
            let dst = if k % 2 == 0 { b } else { BROADCAST };
            let mut f = frame(dst, a, &[]);
            f.resize(len.max(f.len()), 0x45);
            f.truncate(len);
            let now = net.now;
            net.hosts[0].router.handle_frame(now, &f);
            net.drain(0);
        }
        net.run_for(Duration::from_millis(50));
        let _ = Instant::ZERO;
    }
}
