//! Frames too big for their path: what a router does with them.
//!
//! An IPv4 packet with "don't fragment" set gets an ICMP "fragmentation needed" carrying the
//! largest IP packet the path takes; one without it is cut into IPv4 fragments that fit. An
//! IPv6 packet gets an ICMPv6 "packet too big" (IPv6 routers never fragment). The answer goes
//! back to the sending container through the bridge, as from the packet's destination (a
//! router on the path would send it from its own address; ours has none on the overlay, and
//! hosts accept these errors from any source). Anything else (not IP, a VLAN-tagged frame, a
//! source that must never be answered) is dropped and counted by the caller.

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, Icmpv6Type, IpFragOffset, Ipv4Header, Ipv4Options, Ipv6Header, PacketBuilder};

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
/// The smallest MTU an IPv6 link may have.
const IPV6_MIN_MTU: usize = 1280;

/// What to do with a frame larger than `max_frame` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Inject this ICMP or ICMPv6 error into the bridge.
    Icmp(Vec<u8>),
    /// Send these fragments instead of the frame (each at most `max_frame` bytes).
    Fragments(Vec<Vec<u8>>),
    /// Neither: drop it.
    Drop,
}

/// What a router does with `frame`, which is longer than the `max_frame` bytes its path
/// carries.
pub(crate) fn answer(frame: &[u8], max_frame: usize) -> Answer {
    if frame.len() <= ETH_LEN || max_frame <= ETH_LEN {
        return Answer::Drop;
    }
    let mtu = max_frame - ETH_LEN;
    match [frame[12], frame[13]] {
        ETHERTYPE_IPV4 => ipv4(frame, mtu),
        ETHERTYPE_IPV6 => ipv6(frame, mtu),
        _ => Answer::Drop,
    }
}

/// The IPv4 header and payload of an IPv4 frame, bounded by its total length.
fn ipv4_parts(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < ihl || total > ip.len() {
        return None;
    }
    Some((&ip[..ihl], &ip[ihl..total]))
}

fn ipv4(frame: &[u8], mtu: usize) -> Answer {
    let Some((header, payload)) = ipv4_parts(frame) else { return Answer::Drop };
    let Ok((h, _)) = Ipv4Header::from_slice(header) else { return Answer::Drop };
    // Never answer a packet from nowhere, from a group address or from the broadcast address.
    if h.source == [0, 0, 0, 0] || h.source[0] >= 224 || frame[6] & 1 == 1 {
        return Answer::Drop;
    }
    if !h.dont_fragment {
        return fragment(frame, h, payload, mtu);
    }
    // The error quotes the header and the first 8 bytes of the payload (RFC 792), which is
    // what the sender's stack matches against its sockets.
    let quoted = &frame[ETH_LEN..ETH_LEN + header.len() + payload.len().min(8)];
    let next_hop_mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
    let kind = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu });
    let b = PacketBuilder::ethernet2(mac(frame, 0), mac(frame, 6)).ipv4(h.destination, h.source, 64).icmpv4(kind);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted).expect("writing to a Vec cannot fail");
    Answer::Icmp(out)
}

/// Cuts an IPv4 packet (header `h`) into fragments of at most `mtu` bytes of IP each.
fn fragment(frame: &[u8], h: Ipv4Header, payload: &[u8], mtu: usize) -> Answer {
    let Ok(later_options) = Ipv4Options::try_from(&copied_options(h.options.as_slice())[..]) else {
        return Answer::Drop;
    };
    let base = usize::from(h.fragment_offset.value()) * 8;
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let mut fh = h.clone();
        if at > 0 {
            fh.options = later_options.clone();
        }
        // Every fragment but the last carries a multiple of 8 bytes.
        let room = mtu.saturating_sub(fh.header_len()) / 8 * 8;
        if room == 0 {
            return Answer::Drop;
        }
        let n = room.min(payload.len() - at);
        let Some(offset) = u16::try_from((base + at) / 8).ok().and_then(|o| IpFragOffset::try_new(o).ok()) else {
            return Answer::Drop;
        };
        fh.fragment_offset = offset;
        fh.more_fragments = at + n < payload.len() || h.more_fragments;
        fh.total_len = (fh.header_len() + n) as u16;
        fh.header_checksum = fh.calc_header_checksum();
        let mut f = frame[..ETH_LEN].to_vec();
        f.extend_from_slice(&fh.to_bytes());
        f.extend_from_slice(&payload[at..at + n]);
        out.push(f);
        at += n;
    }
    Answer::Fragments(out)
}

/// The options a fragment after the first carries: those marked "copied", padded to a
/// multiple of 4 bytes.
fn copied_options(opts: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            t => {
                let len = usize::from(*opts.get(i + 1).unwrap_or(&0));
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if t & 0x80 != 0 {
                    out.extend_from_slice(&opts[i..i + len]);
                }
                i += len;
            }
        }
    }
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

fn ipv6(frame: &[u8], mtu: usize) -> Answer {
    let ip = &frame[ETH_LEN..];
    let Ok((h, _)) = Ipv6Header::from_slice(ip) else { return Answer::Drop };
    if mtu < IPV6_MIN_MTU {
        return Answer::Drop;
    }
    // Never answer the unspecified or a multicast source, nor a multicast destination.
    if h.source == [0; 16] || h.source[0] == 0xff || h.destination[0] == 0xff || frame[6] & 1 == 1 {
        return Answer::Drop;
    }
    // As much of the packet as fits an error of the minimum IPv6 MTU (RFC 4443).
    let quoted = &ip[..ip.len().min(IPV6_MIN_MTU - 40 - 8)];
    let kind = Icmpv6Type::PacketTooBig { mtu: u32::try_from(mtu).unwrap_or(u32::MAX) };
    let b = PacketBuilder::ethernet2(mac(frame, 0), mac(frame, 6)).ipv6(h.destination, h.source, 64).icmpv6(kind);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted).expect("writing to a Vec cannot fail");
    Answer::Icmp(out)
}

/// The MAC at `at` in the frame: the reply goes from the frame's destination to its source.
fn mac(frame: &[u8], at: usize) -> [u8; 6] {
    frame[at..at + 6].try_into().expect("an Ethernet header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, NetSlice, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn udp4(len: usize, df: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(A, B).ipv4([10, 32, 0, 1], [10, 32, 0, 2], 64).udp(4000, 5000);
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut out = Vec::new();
        b.write(&mut out, &payload).unwrap();
        if !df {
            // etherparse sets DF by default.
            out[ETH_LEN + 6] &= !0x40;
            let mut h = Ipv4Header::from_slice(&out[ETH_LEN..]).unwrap().0;
            h.dont_fragment = false;
            let hb = h.to_bytes();
            out[ETH_LEN..ETH_LEN + 20].copy_from_slice(&hb);
        }
        out
    }

    #[test]
    fn a_df_packet_gets_fragmentation_needed_with_the_paths_mtu() {
        let f = udp4(1400, true);
        let Answer::Icmp(icmp) = answer(&f, 1300) else { panic!("an ICMP error") };
        let p = SlicedPacket::from_ethernet(&icmp).unwrap();
        assert_eq!(&icmp[..6], &A, "back to the sender");
        assert_eq!(&icmp[6..12], &B, "as from the destination");
        let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("IPv4") };
        assert_eq!(ip.header().source(), [10, 32, 0, 2]);
        assert_eq!(ip.header().destination(), [10, 32, 0, 1]);
        assert!(ip.header().to_header().calc_header_checksum() == ip.header().header_checksum());
        let Some(TransportSlice::Icmpv4(i)) = &p.transport else { panic!("ICMP") };
        assert_eq!(
            i.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1286 })
        );
        assert_eq!(i.header().icmp_type.calc_checksum(i.payload()), i.checksum(), "ICMP checksum");
        // The quote: the original IP header and the UDP header.
        assert_eq!(&i.payload()[..28], &f[ETH_LEN..ETH_LEN + 28]);
    }

    #[test]
    fn a_packet_without_df_is_cut_into_fragments_that_fit_and_reassemble() {
        let f = udp4(3000, false);
        let Answer::Fragments(parts) = answer(&f, 1300) else { panic!("fragments") };
        assert!(parts.len() >= 3);
        let mut data = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            assert!(p.len() <= 1300, "fragment {k} is {} bytes", p.len());
            let (h, rest) = Ipv4Header::from_slice(&p[ETH_LEN..]).unwrap();
            assert_eq!(h.calc_header_checksum(), h.header_checksum);
            assert_eq!(usize::from(h.fragment_offset.byte_offset()), data.len());
            assert_eq!(h.more_fragments, k + 1 < parts.len());
            assert_eq!(h.identification, Ipv4Header::from_slice(&f[ETH_LEN..]).unwrap().0.identification);
            data.extend_from_slice(&rest[..usize::from(h.total_len) - h.header_len()]);
        }
        assert_eq!(&data[..], &f[ETH_LEN + 20..]);
    }

    #[test]
    fn ipv6_gets_packet_too_big_and_never_below_1280() {
        let b = PacketBuilder::ethernet2(A, B).ipv6([0xfd; 16], [0xfe; 16], 64).udp(4000, 5000);
        let mut f = Vec::new();
        b.write(&mut f, &[7u8; 2000]).unwrap();
        let Answer::Icmp(icmp) = answer(&f, 1400) else { panic!("an ICMPv6 error") };
        let p = SlicedPacket::from_ethernet(&icmp).unwrap();
        let Some(TransportSlice::Icmpv6(i)) = &p.transport else { panic!("ICMPv6") };
        assert_eq!(i.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1386 });
        let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("IPv6") };
        assert_eq!(
            i.header().checksum,
            i.header().icmp_type.calc_checksum(ip.header().source(), ip.header().destination(), i.payload()).unwrap()
        );
        assert!(icmp.len() <= ETH_LEN + 1280);
        assert_eq!(answer(&f, 1200), Answer::Drop, "an IPv6 path under 1,280 bytes cannot be answered");
    }

    #[test]
    fn broadcasts_non_ip_and_bogus_sources_are_not_answered() {
        let mut f = udp4(1400, true);
        f[6] |= 1;
        assert_eq!(answer(&f, 1300), Answer::Drop, "a group source MAC");
        let mut arp = udp4(1400, true);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(answer(&arp, 1300), Answer::Drop);
        let mut zero = udp4(1400, true);
        zero[ETH_LEN + 12..ETH_LEN + 16].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(answer(&zero, 1300), Answer::Drop);
        let _ = IpNumber::UDP;
    }

    proptest! {
        #[test]
        fn any_bytes_and_any_limit_are_answered_without_a_panic(
            frame in proptest::collection::vec(any::<u8>(), 0..3000),
            ipv4 in any::<bool>(),
            max in 0usize..3000,
        ) {
            let mut frame = frame;
            if frame.len() > 14 {
                frame[12..14].copy_from_slice(if ipv4 { &ETHERTYPE_IPV4 } else { &ETHERTYPE_IPV6 });
            }
            if let Answer::Fragments(parts) = answer(&frame, max) {
                for p in parts {
                    prop_assert!(p.len() <= max);
                }
            }
        }
    }
}
