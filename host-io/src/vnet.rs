//! Super-frames with their offload metadata: the virtio-net header that an `AF_PACKET` socket
//! with `PACKET_VNET_HDR` (or a TAP device with `IFF_VNET_HDR`) puts before every frame, and
//! the coalescing of a flow's TCP segments into one super-frame that the receiving kernel
//! takes whole (receive offload done by the router before it injects).
//!
//! Coalescing follows strict rules, so that cutting the super-frame again at its `gso_size`
//! (as the kernel does, and as [`crate::segment::complete`] does) gives back exactly the
//! segments that went in: the same flow, the same IP and TCP headers but for lengths,
//! checksums, the IPv4 identification (consecutive) and the sequence number (contiguous),
//! only ACK set (PSH allowed on the last segment), equal payload sizes but for a shorter last
//! one. A batch is coalesced as it is: nothing waits for frames that are not there yet.

use crate::segment::{fold, sum, ETH, PSH, TCP};

const ACK: u8 = 0x10;
/// The largest IP packet: the IPv4 total length and the IPv6 payload length are 16 bits.
const IP_MAX: usize = 65_535;

/// Bytes of the header (`struct virtio_net_hdr`, without the `num_buffers` of the mergeable
/// variant).
pub const HDR_LEN: usize = 10;
/// `flags`: the transport checksum is to be completed, from `csum_start`, into
/// `csum_start + csum_offset`; the field holds the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksums were verified.
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: one frame, no segmentation.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4, cut into `gso_size` payloads.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the segments carry ECN (CWR on the first only).
pub const GSO_ECN: u8 = 0x80;

/// A virtio-net header. Its 16-bit fields are in the host's byte order, as the kernel's
/// packet sockets and TAP devices use them on a little-endian host (and, without
/// `TUNSETVNETBE`, on a big-endian one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`.
    pub gso_type: u8,
    /// Bytes of Ethernet, IP and TCP headers before the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed data starts (the transport header).
    pub csum_start: u16,
    /// Where in it the checksum field is.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`HDR_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; HDR_LEN] = b.get(..HDR_LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header's bytes.
    pub fn emit(&self) -> [u8; HDR_LEN] {
        let mut b = [0; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [(2, self.hdr_len), (4, self.gso_size), (6, self.csum_start), (8, self.csum_offset)] {
            b[i..i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// A TCP segment, as far as coalescing needs.
#[derive(Clone, Copy)]
struct Seg {
    v6: bool,
    /// IP header length (20 for IPv4 without options; 40 for IPv6 without extensions).
    ihl: usize,
    /// TCP header length.
    thl: usize,
    payload: usize,
    seq: u32,
    flags: u8,
    /// IPv4 identification.
    id: u16,
}

impl Seg {
    fn headers(&self) -> usize {
        ETH + self.ihl + self.thl
    }
}

/// A TCP segment that may be coalesced: IPv4 without options or fragments, or IPv6 without
/// extension headers; only ACK and PSH set; some payload.
fn parse(f: &[u8]) -> Option<Seg> {
    let (v6, ihl, l4len) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x0800 => {
            let ip = f.get(ETH..ETH + 20)?;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if ip[0] != 0x45 || frag != 0 || ip[9] != TCP || total < 20 || ETH + total != f.len() {
                return None;
            }
            (false, 20, total - 20)
        }
        0x86dd => {
            let ip = f.get(ETH..ETH + 40)?;
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ip[0] >> 4 != 6 || ip[6] != TCP || ETH + 40 + payload != f.len() {
                return None;
            }
            (true, 40, payload)
        }
        _ => return None,
    };
    let t = f.get(ETH + ihl..)?;
    let thl = usize::from(*t.get(12)? >> 4) * 4;
    let flags = *t.get(13)?;
    if thl < 20 || thl >= l4len || flags & !PSH != ACK {
        return None;
    }
    let id = if v6 { 0 } else { u16::from_be_bytes([f[ETH + 4], f[ETH + 5]]) };
    Some(Seg { v6, ihl, thl, payload: l4len - thl, seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]), flags, id })
}

/// Whether `b` continues the run whose first segment is `a0` (frame `f0`), whose last is
/// `last`, after `k` segments: the same headers but for what segmentation changes, the next
/// sequence number and identification, and a payload no larger than the first's.
fn continues(f0: &[u8], a0: &Seg, last: &Seg, k: u16, fb: &[u8], b: &Seg) -> bool {
    if b.v6 != a0.v6 || b.thl != a0.thl || b.payload > a0.payload || last.payload != a0.payload || last.flags & PSH != 0
    {
        return false;
    }
    if b.seq != last.seq.wrapping_add(last.payload as u32) {
        return false;
    }
    let l4 = ETH + a0.ihl;
    // Ethernet header; then the IP header without its lengths, identification and checksum.
    let same_ip = if a0.v6 {
        f0[..ETH + 4] == fb[..ETH + 4] && f0[ETH + 6..l4] == fb[ETH + 6..l4]
    } else {
        f0[..ETH + 2] == fb[..ETH + 2]
            && f0[ETH + 6..ETH + 10] == fb[ETH + 6..ETH + 10]
            && f0[ETH + 12..l4] == fb[ETH + 12..l4]
            && b.id == a0.id.wrapping_add(k)
    };
    // TCP: ports, acknowledgement, header length, window, urgent pointer and options.
    same_ip
        && f0[l4..l4 + 4] == fb[l4..l4 + 4]
        && f0[l4 + 8..l4 + 13] == fb[l4 + 8..l4 + 13]
        && f0[l4 + 14..l4 + 16] == fb[l4 + 14..l4 + 16]
        && f0[l4 + 18..l4 + a0.thl] == fb[l4 + 18..l4 + a0.thl]
}

/// Turns `f` (the first segment's headers) into a super-frame's headers, for a TCP header
/// and payload of `l4len` bytes in all: IP lengths and checksum, PSH from the last segment,
/// and the TCP checksum field holding the pseudo-header sum for the kernel to complete.
fn finish(f: &mut [u8], s: &Seg, l4len: usize, push: bool) -> VnetHdr {
    let l4 = ETH + s.ihl;
    if s.v6 {
        f[ETH + 4..ETH + 6].copy_from_slice(&(l4len as u16).to_be_bytes());
    } else {
        f[ETH + 2..ETH + 4].copy_from_slice(&((s.ihl + l4len) as u16).to_be_bytes());
        f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let c = fold(sum(0, &f[ETH..l4]));
        f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
    }
    if push {
        f[l4 + 13] |= PSH;
    }
    let addrs = if s.v6 { &f[ETH + 8..ETH + 40] } else { &f[ETH + 12..ETH + 20] };
    // The folded sum, not its complement: the kernel adds the data and complements.
    let pseudo = !fold(sum(u64::from(TCP) + l4len as u64, addrs));
    f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if s.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: s.headers() as u16,
        gso_size: s.payload as u16,
        csum_start: l4 as u16,
        csum_offset: 16,
    }
}

/// What [`coalesce`] makes of a batch, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The batch's frame at this index, as it is (no header needed: [`VnetHdr::default`]).
    Frame(usize),
    /// A super-frame: its headers, then the payloads of its segments (each member frame's
    /// bytes after `hdr.hdr_len`), in order.
    Joined {
        /// Its virtio-net header.
        hdr: VnetHdr,
        /// Where its headers are in the output buffer.
        head: std::ops::Range<usize>,
        /// Where its segments are in the member list.
        members: std::ops::Range<usize>,
    },
}

impl Piece {
    /// The parts of the frame this piece stands for, in order: the frame itself, or a
    /// super-frame's headers and its members' payloads (to be written gathered, without
    /// joining them in memory).
    pub fn parts<'a>(&self, frames: &[&'a [u8]], out: &'a [u8], members: &[usize]) -> Vec<&'a [u8]> {
        match self {
            Piece::Frame(i) => vec![frames[*i]],
            Piece::Joined { hdr, head, members: m } => std::iter::once(&out[head.clone()])
                .chain(members[m.clone()].iter().map(|&i| &frames[i][usize::from(hdr.hdr_len)..]))
                .collect(),
        }
    }
}

/// A run of segments of one flow being joined.
struct Run {
    /// The first segment's index in the batch, and its parse.
    first: usize,
    a0: Seg,
    /// The last segment so far, its index, and how many segments and IP bytes the run has.
    last: Seg,
    tail: usize,
    k: u16,
    size: usize,
}

/// The addresses and ports of a TCP frame over IPv4 or IPv6 (any header shape): frames with
/// equal keys belong to one flow.
fn flow(f: &[u8]) -> Option<(&[u8], &[u8])> {
    let (addrs, l4) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x0800 if f.get(ETH + 9) == Some(&TCP) => (ETH + 12..ETH + 20, ETH + usize::from(f[ETH] & 0x0f) * 4),
        0x86dd if f.get(ETH + 6) == Some(&TCP) => (ETH + 8..ETH + 40, ETH + 40),
        _ => return None,
    };
    Some((f.get(addrs)?, f.get(l4..l4 + 4)?))
}

/// Coalesces a batch of complete frames (checksums valid) into `pieces`: each run of one
/// flow's segments that may be joined becomes one super-frame, its headers written to `out`
/// and its segments listed in `members`; every other frame stays as it is. The segments of
/// one flow keep their order, and so do all frames that are not joined; a flow's run takes
/// the place of its first segment, so flows interleaved in the batch still coalesce. `out`,
/// `members` and `pieces` are cleared first. [`Piece::parts`] gives each piece's bytes.
pub fn coalesce(frames: &[&[u8]], out: &mut Vec<u8>, members: &mut Vec<usize>, pieces: &mut Vec<Piece>) {
    out.clear();
    members.clear();
    pieces.clear();
    // Every frame's place: the run it starts, joins or none (`usize::MAX`), linked through
    // `next` to the run's next segment.
    let mut runs: Vec<Run> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut next = vec![usize::MAX; frames.len()];
    let mut order: Vec<(usize, bool)> = Vec::with_capacity(frames.len());
    for (i, &f) in frames.iter().enumerate() {
        let key = flow(f);
        // This flow's open run, if any: a segment either continues it or ends it.
        let mine = key.and_then(|key| open.iter().position(|&r| flow(frames[runs[r].first]) == Some(key)));
        let seg = parse(f);
        if let (Some(at), Some(b)) = (mine, seg) {
            let r = &mut runs[open[at]];
            if r.size + b.payload <= IP_MAX && r.k < u16::MAX && continues(frames[r.first], &r.a0, &r.last, r.k, f, &b)
            {
                next[r.tail] = i;
                (r.last, r.tail, r.k, r.size) = (b, i, r.k + 1, r.size + b.payload);
                continue;
            }
        }
        if let Some(at) = mine {
            open.swap_remove(at);
        }
        match seg {
            Some(a0) => {
                open.push(runs.len());
                order.push((runs.len(), true));
                runs.push(Run { first: i, a0, last: a0, tail: i, k: 1, size: f.len() - ETH });
            }
            None => order.push((i, false)),
        }
    }
    for (at, is_run) in order {
        if !is_run {
            pieces.push(Piece::Frame(at));
            continue;
        }
        let r = &runs[at];
        if r.k == 1 {
            pieces.push(Piece::Frame(r.first));
            continue;
        }
        let (start, m0) = (out.len(), members.len());
        out.extend_from_slice(&frames[r.first][..r.a0.headers()]);
        let mut j = r.first;
        while j != usize::MAX {
            members.push(j);
            j = next[j];
        }
        let l4len = r.size - r.a0.ihl;
        let hdr = finish(&mut out[start..], &r.a0, l4len, r.last.flags & PSH != 0);
        pieces.push(Piece::Joined { hdr, head: start..out.len(), members: m0..members.len() });
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    use super::*;
    use crate::segment::complete;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// A TCP segment of the flow under test, as a sending stack's TSO would cut it.
    fn seg(v6: bool, k: u16, seq: u32, payload: &[u8], psh: bool) -> Vec<u8> {
        seg_to(v6, 2, k, seq, payload, psh)
    }

    /// The same, to the address ending in `dst`.
    fn seg_to(v6: bool, dst: u8, k: u16, seq: u32, payload: &[u8], psh: bool) -> Vec<u8> {
        let b = if v6 {
            let d = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, dst];
            PacketBuilder::ethernet2(A, B).ipv6([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], d, 64)
        } else {
            let mut h =
                etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, [10, 0, 0, 1], [10, 0, 0, dst]).unwrap();
            h.identification = 1000u16.wrapping_add(k);
            h.dont_fragment = true;
            PacketBuilder::ethernet2(A, B).ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
        };
        let mut t = b.tcp(40000, 5201, seq, 501).ack(77);
        if psh {
            t = t.psh();
        }
        let t = t
            .options(&[
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::Timestamp(9, 8),
            ])
            .unwrap();
        let mut out = Vec::new();
        t.write(&mut out, payload).unwrap();
        out
    }

    fn segments(v6: bool, sizes: &[usize], seq0: u32, psh_last: bool) -> Vec<Vec<u8>> {
        let mut seq = seq0;
        let mut out = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|i| (i as u32 ^ seq) as u8).collect();
            out.push(seg(v6, k as u16, seq, &payload, psh_last && k + 1 == sizes.len()));
            seq = seq.wrapping_add(n as u32);
        }
        out
    }

    fn run(frames: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let (mut out, mut members, mut pieces) = (Vec::new(), Vec::new(), Vec::new());
        coalesce(&refs, &mut out, &mut members, &mut pieces);
        pieces
            .iter()
            .map(|p| {
                let hdr = match p {
                    Piece::Frame(_) => VnetHdr::default(),
                    Piece::Joined { hdr, .. } => *hdr,
                };
                (hdr, p.parts(&refs, &out, &members).concat())
            })
            .collect()
    }

    /// What the kernel does with a super-frame: cut it at `gso_size` and complete checksums.
    fn resegment(h: &VnetHdr, f: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mtu =
            if h.gso_type == GSO_NONE { usize::MAX } else { usize::from(h.hdr_len) - ETH + usize::from(h.gso_size) };
        complete(f, mtu, &mut Vec::new(), |s| out.push(s.to_vec()));
        out
    }

    #[test]
    fn the_header_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.emit()), Some(h));
        assert_eq!(VnetHdr::parse(&[0; HDR_LEN - 1]), None);
    }

    #[test]
    fn a_run_of_segments_becomes_one_super_frame_that_cuts_back_into_them() {
        for v6 in [false, true] {
            let sizes = [1448, 1448, 1448, 1448, 700];
            let segs = segments(v6, &sizes, 0xffff_f000, true);
            let out = run(&segs);
            assert_eq!(out.len(), 1, "v6 {v6}");
            let (h, f) = &out[0];
            assert_eq!(h.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            assert_eq!((h.gso_size, h.flags, h.csum_offset), (1448, F_NEEDS_CSUM, 16));
            let hdr = ETH + if v6 { 40 } else { 20 } + 32;
            assert_eq!((usize::from(h.hdr_len), usize::from(h.csum_start)), (hdr, hdr - 32));
            assert_eq!(f.len(), hdr + sizes.iter().sum::<usize>());
            // The super-frame parses, with the total length and PSH of the last segment.
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("tcp") };
            assert!(t.psh() && t.ack());
            assert_eq!(t.sequence_number(), 0xffff_f000);
            if let Some(NetSlice::Ipv4(ip)) = p.net {
                assert_eq!(ip.header().to_header().calc_header_checksum(), ip.header().header_checksum());
            }
            assert_eq!(resegment(h, f), segs, "v6 {v6}: cut again, the same segments");
            // Completed as the kernel completes a partial checksum (sum from `csum_start`,
            // field included, complemented), the super-frame's TCP checksum is right.
            let mut done = f.clone();
            let (start, at) = (usize::from(h.csum_start), usize::from(h.csum_start + h.csum_offset));
            let c = fold(sum(0, &done[start..]));
            done[at..at + 2].copy_from_slice(&c.to_be_bytes());
            let p = SlicedPacket::from_ethernet(&done).unwrap();
            let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("tcp") };
            let want = match &p.net {
                Some(NetSlice::Ipv4(ip)) => {
                    t.calc_checksum_ipv4(ip.header().source(), ip.header().destination()).unwrap()
                }
                Some(NetSlice::Ipv6(ip)) => {
                    t.calc_checksum_ipv6(ip.header().source(), ip.header().destination()).unwrap()
                }
                _ => panic!("ip"),
            };
            assert_eq!(t.checksum(), want, "v6 {v6}");
        }
    }

    #[test]
    fn runs_break_where_the_rules_say_and_order_is_kept() {
        let mut segs = segments(false, &[1000, 1000, 500, 1000, 1000], 1, false);
        // A gap in the sequence after the fourth: segments 4 and 5 start a new run, then
        // a segment of another flow and a pure ACK pass alone.
        let seq5 = 1 + 3500 + 1000 + 10;
        segs[4] = seg(false, 4, seq5, &vec![7u8; 1000], false);
        segs.push(seg_to(false, 3, 5, 1 + 3500 + 1000 + 10 + 1000, &[1; 100], false));
        segs.push(seg(false, 9, 5, &[], false));
        let out = run(&segs);
        let sizes: Vec<(u8, usize)> = out.iter().map(|(h, f)| (h.gso_type, f.len())).collect();
        let hdr = ETH + 20 + 32;
        assert_eq!(
            sizes,
            vec![
                (GSO_TCPV4, hdr + 2500),
                (GSO_NONE, hdr + 1000),
                (GSO_NONE, hdr + 1000),
                (GSO_NONE, hdr + 100),
                (GSO_NONE, hdr)
            ]
        );
        let back: Vec<Vec<u8>> = out.iter().flat_map(|(h, f)| resegment(h, f)).collect();
        assert_eq!(back, segs);
    }

    /// The frames of the flow to the address ending in `dst`, in order.
    fn of_flow(frames: &[Vec<u8>], dst: u8) -> Vec<Vec<u8>> {
        let ip = |f: &Vec<u8>| if f[12] == 0x08 { f[ETH + 19] } else { f[ETH + 39] };
        frames.iter().filter(|f| ip(f) == dst).cloned().collect()
    }

    #[test]
    fn interleaved_flows_each_become_one_super_frame() {
        for v6 in [false, true] {
            let mut batch = Vec::new();
            for k in 0..6u16 {
                for dst in [2, 3] {
                    let seq = 100 + u32::from(k) * 1000;
                    batch.push(seg_to(v6, dst, k, seq, &[dst; 1000], k == 5));
                }
            }
            let out = run(&batch);
            assert_eq!(out.len(), 2, "v6 {v6}: one super-frame per flow");
            for (i, dst) in [2, 3].into_iter().enumerate() {
                let (h, f) = &out[i];
                assert_eq!(h.gso_size, 1000);
                assert_eq!(resegment(h, f), of_flow(&batch, dst), "v6 {v6}: flow to {dst}");
            }
        }
    }

    #[test]
    fn a_segment_that_cannot_join_ends_its_flows_run() {
        // A, then A's pure ACK, then A again: the data after the ACK must not move before it.
        let a = segments(false, &[1000, 1000, 1000], 1, false);
        let batch = vec![a[0].clone(), a[1].clone(), seg(false, 2, 2001, &[], false), a[2].clone()];
        let out = run(&batch);
        let back: Vec<Vec<u8>> = out.iter().flat_map(|(h, f)| resegment(h, f)).collect();
        assert_eq!(back, batch);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_super_frame_never_exceeds_the_ip_limit() {
        let segs = segments(false, &[1448; 60], 7, false);
        let out = run(&segs);
        assert!(out.len() >= 2);
        for (_, f) in &out {
            assert!(f.len() - ETH <= IP_MAX);
        }
        let back: Vec<Vec<u8>> = out.iter().flat_map(|(h, f)| resegment(h, f)).collect();
        assert_eq!(back, segs);
    }

    proptest! {
        /// Whatever the batch (flows cut anywhere, PSH anywhere, sizes anywhere), cutting
        /// what comes out gives back exactly the frames that went in, in order.
        #[test]
        fn coalescing_then_cutting_gives_back_the_batch(
            v6 in any::<bool>(),
            sizes in proptest::collection::vec(0usize..2000, 1..40),
            psh in proptest::collection::vec(any::<bool>(), 40),
            gap in proptest::collection::vec(0u8..8, 40),
            seq0 in any::<u32>(),
        ) {
            let mut seq = seq0;
            let mut frames = Vec::new();
            for (k, &n) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..n).map(|i| (i * 7 + k) as u8).collect();
                frames.push(seg(v6, k as u16, seq, &payload, psh[k]));
                // Now and then a hole: the next segment does not continue this one.
                seq = seq.wrapping_add(n as u32 + u32::from(gap[k] == 0));
            }
            let out = run(&frames);
            for (h, f) in &out {
                if h.gso_type != GSO_NONE {
                    prop_assert!(resegment(h, f).len() >= 2, "a super-frame joins segments");
                }
            }
            let back: Vec<Vec<u8>> = out.iter().flat_map(|(h, f)| resegment(h, f)).collect();
            prop_assert_eq!(back, frames);
        }

        /// Two flows interleaved at random: each flow's segments come back in order.
        #[test]
        fn interleaved_flows_keep_their_own_order(
            v6 in any::<bool>(),
            picks in proptest::collection::vec((any::<bool>(), 1usize..1500, 0u8..6), 1..50),
        ) {
            let mut seq = [5u32, 9_000_000];
            let mut k = [0u16; 2];
            let mut frames = Vec::new();
            for &(second, n, gap) in &picks {
                let i = usize::from(second);
                frames.push(seg_to(v6, 2 + second as u8, k[i], seq[i], &vec![n as u8; n], gap == 1));
                seq[i] = seq[i].wrapping_add(n as u32 + u32::from(gap == 0));
                k[i] += 1;
            }
            let out = run(&frames);
            let back: Vec<Vec<u8>> = out.iter().flat_map(|(h, f)| resegment(h, f)).collect();
            for dst in [2, 3] {
                prop_assert_eq!(of_flow(&back, dst), of_flow(&frames, dst));
            }
            prop_assert_eq!(back.len(), frames.len());
        }

        #[test]
        fn arbitrary_bytes_pass_through_untouched(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let out = run(&frames);
            let got: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
            prop_assert_eq!(got, frames);
        }
    }
}
