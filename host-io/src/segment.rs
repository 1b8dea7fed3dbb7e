//! Frames captured with the kernel's offloads on arrive as the sending stack left them: TCP
//! segments of up to 64 KiB (TSO/GSO) and TCP/UDP checksums only partly computed (checksum
//! offload). Before the router sees them they are completed here, as a NIC would: large TCP
//! segments are cut to the MTU and checksums are computed. Everything else passes unchanged.
//!
//! Letting containers hand 64 KiB segments to the bridge, rather than cutting them in their
//! own stack, saves the kernel a bridge traversal and a capture copy per MTU-sized frame.

/// Bytes of an Ethernet header (no VLAN tag).
pub(crate) const ETH: usize = 14;
/// IP protocol numbers.
pub(crate) const TCP: u8 = 6;
const UDP: u8 = 17;
/// TCP flags.
const FIN: u8 = 0x01;
pub(crate) const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// The IP layer of a frame, as far as completing it needs.
struct Ip {
    v6: bool,
    /// IP header length (IPv4 with options; 40 for IPv6, which must have no extension header).
    hlen: usize,
    /// Transport protocol.
    proto: u8,
    /// Transport header and payload length.
    l4len: usize,
}

fn parse_ip(f: &[u8]) -> Option<Ip> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    match ethertype {
        0x0800 => {
            let b = f.get(ETH..)?;
            let hlen = usize::from(b.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
            let frag = u16::from_be_bytes([*b.get(6)?, *b.get(7)?]) & 0x3fff;
            if b[0] >> 4 != 4 || hlen < 20 || total < hlen || total > b.len() || frag != 0 {
                return None;
            }
            Some(Ip { v6: false, hlen, proto: b[9], l4len: total - hlen })
        }
        0x86dd => {
            let b = f.get(ETH..)?;
            let payload = usize::from(u16::from_be_bytes([*b.get(4)?, *b.get(5)?]));
            if b[0] >> 4 != 6 || 40 + payload > b.len() {
                return None;
            }
            Some(Ip { v6: true, hlen: 40, proto: b[6], l4len: payload })
        }
        _ => None,
    }
}

/// Adds big-endian 16-bit words of `data` (a trailing odd byte padded with zero) to `acc`,
/// in ones' complement: the result, folded, is the Internet checksum's sum.
pub(crate) fn sum(acc: u64, data: &[u8]) -> u64 {
    // The ones' complement sum does not depend on byte order (RFC 1071): words are added as
    // the machine reads them, little-endian 32-bit words into a 64-bit sum (no carry is lost
    // below 2^32 words), and the folded 16-bit result is swapped back. The plain loop lets
    // the compiler add several words per instruction.
    let mut words = data.chunks_exact(4);
    let wide: u64 = (&mut words).map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))).sum();
    let folded = !fold(wide);
    let mut acc = fold_wide(acc) + u64::from(folded.swap_bytes());
    let rest = words.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// `acc` reduced below 2^33, its ones' complement sum unchanged.
fn fold_wide(acc: u64) -> u64 {
    (acc & 0xffff_ffff) + (acc >> 32)
}

/// The Internet checksum of a sum: folded to 16 bits and complemented.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Writes the transport checksum of the IP packet at `f[ETH..]` (its checksum field must be
/// zero on entry).
fn l4_checksum(f: &mut [u8], ip: &Ip, csum_at: usize) {
    let b = &f[ETH..];
    let l4 = &b[ip.hlen..ip.hlen + ip.l4len];
    let mut acc = if ip.v6 { sum(0, &b[8..40]) } else { sum(0, &b[12..20]) };
    acc += u64::from(ip.proto) + ip.l4len as u64;
    acc = sum(acc, l4);
    let mut c = fold(acc);
    if c == 0 && ip.proto == UDP {
        c = 0xffff;
    }
    let at = ETH + ip.hlen + csum_at;
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn ipv4_header_checksum(f: &mut [u8], hlen: usize) {
    f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
    let c = fold(sum(0, &f[ETH..ETH + hlen]));
    f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
}

/// Completes a captured frame: hands `emit` the frame itself, or its TCP segments cut to
/// `mtu`, with computed checksums. `scratch` is reused between calls. (The frame is copied
/// once, into `scratch`; [`complete_in_place`] does the same work without copying.)
pub fn complete(frame: &[u8], mtu: usize, scratch: &mut Vec<u8>, emit: impl FnMut(&[u8])) {
    if parse_ip(frame).is_none() {
        let mut emit = emit;
        return emit(frame);
    }
    scratch.clear();
    scratch.extend_from_slice(frame);
    complete_in_place(scratch, mtu, emit);
}

/// As [`complete`], in `frame` itself: checksums are written into it, and each TCP segment
/// after the first is made by writing the headers over the end of the segment before it, which
/// `emit` has already had. So `frame`'s bytes are changed, and nothing is copied but headers.
pub fn complete_in_place(frame: &mut [u8], mtu: usize, mut emit: impl FnMut(&[u8])) {
    let Some(ip) = parse_ip(frame) else { return emit(frame) };
    let l4 = ETH + ip.hlen;
    let end = l4 + ip.l4len;
    match ip.proto {
        TCP if ip.l4len >= 20 => {
            let thlen = usize::from(frame[l4 + 12] >> 4) * 4;
            if thlen < 20 || thlen > ip.l4len {
                return emit(frame);
            }
            let payload = ip.l4len - thlen;
            let mss = mtu.saturating_sub(ip.hlen + thlen);
            if ip.hlen + ip.l4len <= mtu || mss == 0 {
                frame[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
                l4_checksum(&mut frame[..end], &ip, 16);
                return emit(&frame[..end]);
            }
            // The headers as they came: every segment's start from them.
            let hl = l4 + thlen;
            let mut headers = [0u8; ETH + 60 + 60];
            headers[..hl].copy_from_slice(&frame[..hl]);
            let headers = &headers[..hl];
            let seq = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().expect("4 bytes"));
            let flags = frame[l4 + 13];
            let id = if ip.v6 { 0 } else { u16::from_be_bytes([frame[ETH + 4], frame[ETH + 5]]) };
            let mut off = 0;
            let mut k: u16 = 0;
            while off < payload {
                let n = mss.min(payload - off);
                let last = off + n == payload;
                // This segment: its headers, then its payload, which is where it was.
                let seg = &mut frame[off..off + hl + n];
                seg[..hl].copy_from_slice(headers);
                let sip = Ip { l4len: thlen + n, ..ip };
                if sip.v6 {
                    seg[ETH + 4..ETH + 6].copy_from_slice(&(sip.l4len as u16).to_be_bytes());
                } else {
                    let total = (sip.hlen + sip.l4len) as u16;
                    seg[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
                    seg[ETH + 4..ETH + 6].copy_from_slice(&id.wrapping_add(k).to_be_bytes());
                    ipv4_header_checksum(seg, sip.hlen);
                }
                seg[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(off as u32).to_be_bytes());
                let mut f = flags;
                if !last {
                    f &= !(FIN | PSH);
                }
                if off != 0 {
                    f &= !CWR;
                }
                seg[l4 + 13] = f;
                seg[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
                l4_checksum(seg, &sip, 16);
                emit(seg);
                off += n;
                k = k.wrapping_add(1);
            }
        }
        // An IPv4 UDP checksum of zero means "none"; anything else may be partial.
        UDP if ip.l4len >= 8 && (ip.v6 || frame[l4 + 6..l4 + 8] != [0, 0]) => {
            frame[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
            l4_checksum(&mut frame[..end], &ip, 6);
            emit(&frame[..end])
        }
        _ => emit(frame),
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;

    fn tcp4(payload: &[u8], seq: u32, fin: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 32, 0, 1], [10, 32, 0, 2], 64)
            .tcp(40000, 5201, seq, 1000)
            .psh()
            .ack(77);
        let b = if fin { b.fin() } else { b };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn tcp6(payload: &[u8], seq: u32) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 5201, seq, 1000)
            .ack(77);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// Checksums as etherparse computes them, independently of this module.
    fn valid(f: &[u8]) -> bool {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        match (&p.net, &p.transport) {
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) => {
                let h = ip.header().to_header();
                h.calc_header_checksum() == h.header_checksum
                    && t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap() == t.checksum()
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) => {
                t.to_header().calc_checksum_ipv6(&ip.header().to_header(), t.payload()).unwrap() == t.checksum()
            }
            _ => panic!("a TCP test frame"),
        }
    }

    fn collect(f: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        complete(f, mtu, &mut Vec::new(), |s| out.push(s.to_vec()));
        out
    }

    #[test]
    fn a_complete_small_frame_comes_out_identical() {
        for f in [tcp4(b"hello", 1, false), tcp6(b"hello", 1)] {
            assert!(valid(&f));
            assert_eq!(collect(&f, 1376), vec![f.clone()]);
        }
    }

    #[test]
    fn a_partial_checksum_is_completed() {
        let good = tcp4(&[7u8; 300], 5, false);
        let mut partial = good.clone();
        partial[ETH + 20 + 16] = 0x12;
        partial[ETH + 20 + 17] = 0x34;
        assert_eq!(collect(&partial, 1376), vec![good]);
    }

    #[test]
    fn a_large_tcp_segment_is_cut_to_the_mtu_like_a_nic_would() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for (big, small_hdr) in [(tcp4(&data, 1_000_000, true), 40), (tcp6(&data, 1_000_000), 60)] {
            let mtu = 1376;
            let segs = collect(&big, mtu);
            assert_eq!(segs.len(), 20_000usize.div_ceil(mtu - small_hdr));
            let mut joined = Vec::new();
            let mut expect_seq = 1_000_000u32;
            for (i, s) in segs.iter().enumerate() {
                assert!(s.len() - ETH <= mtu, "segment {i} fits the MTU");
                assert!(valid(s), "segment {i} has valid checksums");
                let p = SlicedPacket::from_ethernet(s).unwrap();
                let Some(TransportSlice::Tcp(t)) = p.transport else { panic!() };
                assert_eq!(t.sequence_number(), expect_seq);
                assert_eq!(t.fin(), i == segs.len() - 1 && small_hdr == 40, "FIN only on the last");
                assert_eq!(t.psh(), i == segs.len() - 1 && small_hdr == 40, "PSH only on the last");
                expect_seq += t.payload().len() as u32;
                joined.extend_from_slice(t.payload());
            }
            assert_eq!(joined, data, "the payload, in order, byte for byte");
        }
    }

    /// The Internet checksum's sum as RFC 1071 writes it: 16-bit words, carries folded in.
    fn naive(acc: u64, data: &[u8]) -> u16 {
        let mut s = acc;
        for w in data.chunks(2) {
            s += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        fold(s)
    }

    proptest::proptest! {
        /// The fast sum agrees with the plain one, whatever the data, its length and the sum
        /// carried in.
        #[test]
        fn the_sum_is_the_rfc_1071_sum(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
                                       acc in 0u64..1 << 48) {
            proptest::prop_assert_eq!(fold(sum(acc, &data)), naive(acc, &data));
        }

        /// Whatever a container puts on the bridge, completing it never panics and never
        /// emits a frame longer than it was given.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
                                        flips in proptest::collection::vec((0usize..3000, proptest::prelude::any::<u8>()), 0..8),
                                        mtu in 0usize..2000) {
            let mut f = if bytes.len() > 100 { tcp4(&bytes, 9, false) } else { bytes.clone() };
            for (i, x) in flips {
                if let Some(b) = f.get_mut(i) {
                    *b ^= x;
                }
            }
            complete(&f, mtu, &mut Vec::new(), |s| assert!(s.len() <= f.len().max(ETH + 60)));
        }
    }

    proptest::proptest! {
        /// Cut in place, a segment of any size gives segments that fit the MTU, carry valid
        /// checksums and contiguous sequence numbers, and hold the payload in order.
        #[test]
        fn cutting_in_place_gives_valid_segments_in_order(len in 1usize..20_000, mtu in 100usize..9000, v6 in proptest::prelude::any::<bool>()) {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
            let mut f = if v6 { tcp6(&data, 0xffff_ff00) } else { tcp4(&data, 0xffff_ff00, true) };
            let mut joined = Vec::new();
            let mut next = 0xffff_ff00u32;
            complete_in_place(&mut f, mtu, |s| {
                assert!(s.len() - ETH <= mtu);
                assert!(valid(s));
                let p = SlicedPacket::from_ethernet(s).unwrap();
                let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("tcp") };
                assert_eq!(t.sequence_number(), next);
                next = next.wrapping_add(t.payload().len() as u32);
                joined.extend_from_slice(t.payload());
            });
            proptest::prop_assert_eq!(joined, data);
        }
    }

    #[test]
    fn other_frames_pass_unchanged() {
        let arp = [0xffu8; 42];
        assert_eq!(collect(&arp, 1376), vec![arp.to_vec()]);
        let mut frag = tcp4(&[1; 100], 1, false);
        frag[ETH + 6] = 0x20; // more fragments
        assert_eq!(collect(&frag, 1376), vec![frag.clone()]);
        let mut short = tcp4(&[1; 100], 1, false);
        short.truncate(40);
        assert_eq!(collect(&short, 1376), vec![short.clone()]);
    }
}
