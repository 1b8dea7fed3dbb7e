//! Virtual containers and the virtual bridge on each host.
//!
//! Containers answer ARP and ICMP echo, send pings, UDP datagrams and broadcasts. Every frame
//! a container sends ends with an 8-byte frame id, so the checkers can follow it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use router_core::table::Table;
use router_core::{Instant, Mac};

use crate::scenario::Subnet;

/// Length of the frame id at the end of every container frame.
pub const ID_LEN: usize = 8;
const ETHERTYPE_ARP: u16 = 0x0806;
const PENDING_MAX: usize = 16;
/// UDP port containers send their datagrams and broadcasts to.
pub const UDP_PORT: u16 = 9999;

/// The frame id at the end of a frame, if it is long enough.
pub fn frame_id(frame: &[u8]) -> Option<u64> {
    let tail = frame.len().checked_sub(ID_LEN).and_then(|s| frame.get(s..))?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// Whether `frame` is an ARP packet long enough to read.
fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= 14 + 28 && frame[12..14] == ETHERTYPE_ARP.to_be_bytes()
}

/// An ARP packet's sender protocol address (see [`is_arp`]).
fn arp_sender(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31])
}

/// A frame's destination and source MACs (frames are at least a header long).
fn macs(frame: &[u8]) -> (Mac, Mac) {
    let mac = |at: usize| Mac(frame[at..at + 6].try_into().expect("frames have a header"));
    (mac(0), mac(6))
}

/// What a container wants to send while it waits for ARP.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Echo { seq: u16 },
    Udp,
}

/// A container's view of one frame it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Not for this container (another MAC, or a protocol it ignores).
    Ignored,
    /// An ARP request or reply it handled.
    Arp,
    /// An IP packet from `src` it accepted.
    Ip {
        /// Source address.
        src: Ipv4Addr,
        /// A reply to one of its pings, with this sequence number.
        echo_reply: Option<u16>,
    },
    /// An IP packet it refused because the source is not in its subnet.
    ForeignIp,
    /// An ICMP "fragmentation needed" for one of its pings: a router made it, not a
    /// container.
    TooBig,
}

/// A virtual container.
#[derive(Debug, Clone)]
pub struct Container {
    /// `host/cN`.
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its subnet.
    pub subnet: Subnet,
    /// The host it is attached to.
    pub host: usize,
    /// How many times it moved.
    pub moves: u32,
    arp: Table<Ipv4Addr, Mac>,
    pending: Vec<(Ipv4Addr, Pending)>,
    next_seq: u16,
    /// Outstanding pings: seq → (target, sent at).
    pub outstanding: BTreeMap<u16, (Ipv4Addr, Instant)>,
    /// Pings sent.
    pub pings_sent: u64,
    /// Ping replies received.
    pub pings_answered: u64,
    /// UDP datagrams received.
    pub udp_received: u64,
    /// Bytes of each ping's frame (0: the smallest).
    pub ping_size: usize,
    /// Path MTUs learned from ICMP "fragmentation needed", by destination (IP bytes).
    pub pmtu: BTreeMap<Ipv4Addr, u16>,
    /// ICMP "fragmentation needed" errors received.
    pub too_big_received: u64,
}

/// Builds frames, numbering each with a fresh id.
#[derive(Debug, Default)]
pub struct Ids {
    next: u64,
}

impl Ids {
    /// A fresh id.
    pub fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

fn arp_frame(
    op: u16,
    src_mac: Mac,
    src_ip: Ipv4Addr,
    dst_mac: Mac,
    eth_dst: Mac,
    dst_ip: Ipv4Addr,
    id: u64,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 28 + ID_LEN);
    f.extend_from_slice(&eth_dst.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&dst_ip.octets());
    f.extend_from_slice(&id.to_be_bytes());
    f
}

impl Container {
    /// A container with an empty ARP cache.
    pub fn new(name: String, mac: Mac, ip: Ipv4Addr, subnet: Subnet, host: usize) -> Self {
        Container {
            name,
            mac,
            ip,
            subnet,
            host,
            moves: 0,
            arp: Table::default(),
            pending: Vec::new(),
            next_seq: 0,
            outstanding: BTreeMap::new(),
            pings_sent: 0,
            pings_answered: 0,
            udp_received: 0,
            ping_size: 0,
            pmtu: BTreeMap::new(),
            too_big_received: 0,
        }
    }

    /// A gratuitous ARP, as sent when attached (announces its MAC wherever it now is).
    pub fn gratuitous_arp(&self, ids: &mut Ids) -> Vec<u8> {
        arp_frame(1, self.mac, self.ip, Mac([0; 6]), Mac::BROADCAST, self.ip, ids.fresh())
    }

    /// An echo request or reply of `size` bytes (at least the smallest); the frame id is its
    /// last 8 bytes.
    fn echo(&self, dst_mac: Mac, dst: Ipv4Addr, request: bool, seq: u16, size: usize, ids: &mut Ids) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(self.mac.0, dst_mac.0).ipv4(self.ip.octets(), dst.octets(), 64);
        let b = if request { b.icmpv4_echo_request(0x5eed, seq) } else { b.icmpv4_echo_reply(0x5eed, seq) };
        let mut payload = vec![0u8; size.saturating_sub(14 + 20 + 8 + ID_LEN)];
        payload.extend_from_slice(&ids.fresh().to_be_bytes());
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, &payload).expect("writing to a Vec cannot fail");
        out
    }

    fn udp(&self, dst_mac: Mac, dst: Ipv4Addr, ids: &mut Ids) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(self.mac.0, dst_mac.0)
            .ipv4(self.ip.octets(), dst.octets(), 64)
            .udp(UDP_PORT, UDP_PORT);
        let payload = ids.fresh().to_be_bytes();
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, &payload).expect("writing to a Vec cannot fail");
        out
    }

    fn send_or_resolve(&mut self, dst: Ipv4Addr, what: Pending, ids: &mut Ids, out: &mut Vec<Vec<u8>>) {
        match self.arp.get(&dst) {
            Some(&mac) => out.push(self.build(mac, dst, what, ids)),
            None => {
                if self.pending.len() < PENDING_MAX {
                    self.pending.push((dst, what));
                }
                out.push(arp_frame(1, self.mac, self.ip, Mac([0; 6]), Mac::BROADCAST, dst, ids.fresh()));
            }
        }
    }

    fn build(&self, mac: Mac, dst: Ipv4Addr, what: Pending, ids: &mut Ids) -> Vec<u8> {
        match what {
            Pending::Echo { seq } => {
                // `ping_size`, or smaller where the path is known to be narrower.
                let cap = self.pmtu.get(&dst).map_or(usize::MAX, |&m| 14 + usize::from(m));
                self.echo(mac, dst, true, seq, self.ping_size.min(cap), ids)
            }
            Pending::Udp => self.udp(mac, dst, ids),
        }
    }

    /// Pings `dst`; returns the sequence number.
    pub fn ping(&mut self, now: Instant, dst: Ipv4Addr, ids: &mut Ids, out: &mut Vec<Vec<u8>>) -> u16 {
        self.next_seq = self.next_seq.wrapping_add(1);
        let seq = self.next_seq;
        self.pings_sent += 1;
        self.outstanding.insert(seq, (dst, now));
        if self.outstanding.len() > 256 {
            self.outstanding.pop_first();
        }
        self.send_or_resolve(dst, Pending::Echo { seq }, ids, out);
        seq
    }

    /// Sends one UDP datagram to `dst`.
    pub fn send_udp(&mut self, dst: Ipv4Addr, ids: &mut Ids, out: &mut Vec<Vec<u8>>) {
        self.send_or_resolve(dst, Pending::Udp, ids, out);
    }

    /// One UDP datagram to `dst` at `dst_mac`, whatever subnet it is in (no ARP: as with a
    /// static neighbour entry).
    pub fn udp_to(&self, dst_mac: Mac, dst: Ipv4Addr, ids: &mut Ids) -> Vec<u8> {
        self.udp(dst_mac, dst, ids)
    }

    /// Broadcasts one UDP datagram on its subnet.
    pub fn broadcast(&self, ids: &mut Ids, out: &mut Vec<Vec<u8>>) {
        let bcast = Ipv4Addr::from(u32::from(self.subnet.addr) | (u32::MAX >> self.subnet.prefix));
        out.push(self.udp(Mac::BROADCAST, bcast, ids));
    }

    /// Handles a frame the bridge delivered; replies go to `out`.
    pub fn receive(&mut self, frame: &[u8], ids: &mut Ids, out: &mut Vec<Vec<u8>>) -> Received {
        if is_arp(frame) {
            return self.receive_arp(frame, ids, out);
        }
        let Ok(p) = SlicedPacket::from_ethernet(frame) else { return Received::Ignored };
        let Some(NetSlice::Ipv4(ip)) = &p.net else { return Received::Ignored };
        let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
        let bcast = Ipv4Addr::from(u32::from(self.subnet.addr) | (u32::MAX >> self.subnet.prefix));
        if dst != self.ip && dst != bcast {
            return Received::Ignored;
        }
        if !self.subnet.contains(src) {
            return Received::ForeignIp;
        }
        let mut echo_reply = None;
        match &p.transport {
            Some(TransportSlice::Icmpv4(icmp)) => match icmp.icmp_type() {
                Icmpv4Type::EchoRequest(h) if dst == self.ip => {
                    let mac = macs(frame).1;
                    self.arp.insert(src, mac);
                    // The reply is as long as the request.
                    out.push(self.echo(mac, src, false, h.seq, frame.len(), ids));
                }
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu }) => {
                    // Quoted: our echo request's IP header and its first 8 bytes.
                    let q = icmp.payload();
                    if q.len() >= 28 && q[9] == 1 && q[20] == 8 {
                        let to = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
                        let seq = u16::from_be_bytes([q[26], q[27]]);
                        self.too_big_received += 1;
                        self.pmtu.insert(to, next_hop_mtu.max(68));
                        // Sent again at once, smaller, as a kernel's TCP resends a segment.
                        if self.outstanding.contains_key(&seq) {
                            self.send_or_resolve(to, Pending::Echo { seq }, ids, out);
                        }
                    }
                    return Received::TooBig;
                }
                Icmpv4Type::EchoReply(h) if self.outstanding.remove(&h.seq).is_some() => {
                    self.pings_answered += 1;
                    echo_reply = Some(h.seq);
                }
                _ => {}
            },
            Some(TransportSlice::Udp(_)) => self.udp_received += 1,
            _ => {}
        }
        Received::Ip { src, echo_reply }
    }

    fn receive_arp(&mut self, f: &[u8], ids: &mut Ids, out: &mut Vec<Vec<u8>>) -> Received {
        let a = &f[14..];
        let op = u16::from_be_bytes([a[6], a[7]]);
        let sha = Mac(a[8..14].try_into().expect("len checked"));
        let spa = arp_sender(f);
        let tpa = Ipv4Addr::new(a[24], a[25], a[26], a[27]);
        // Only neighbours on our own subnet are answered and learned.
        if !self.subnet.contains(spa) || spa == self.ip {
            return Received::Ignored;
        }
        self.arp.insert(spa, sha);
        if op == 1 && tpa == self.ip {
            out.push(arp_frame(2, self.mac, self.ip, sha, sha, spa, ids.fresh()));
        }
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].0 == spa {
                let (dst, what) = self.pending.swap_remove(i);
                out.push(self.build(sha, dst, what, ids));
            } else {
                i += 1;
            }
        }
        Received::Arp
    }
}

/// A port of a host's bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// A container (global index).
    Container(usize),
    /// The router's capture port.
    Router,
}

/// A learning bridge: MAC → port.
#[derive(Debug, Default, Clone)]
pub struct Bridge {
    /// MAC → port: a container's index, or [`ROUTER_PORT`] (bytes, so a slot is 11 bytes).
    fdb: Table<Mac, [u8; 4]>,
}

const ROUTER_PORT: u32 = u32::MAX;

impl Port {
    fn code(self) -> u32 {
        match self {
            Port::Container(i) => u32::try_from(i).expect("fewer than 2^32 - 1 containers"),
            Port::Router => ROUTER_PORT,
        }
    }

    fn from_code(c: u32) -> Port {
        if c == ROUTER_PORT {
            Port::Router
        } else {
            Port::Container(c as usize)
        }
    }
}

/// Where the bridge sends a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// To one port.
    One(Port),
    /// To every port but the one it came in on.
    Flood,
    /// Nowhere (it belongs where it came from).
    Drop,
}

impl Bridge {
    /// Learns the source and decides the output for a frame entering on `from`.
    pub fn forward(&mut self, from: Port, frame: &[u8]) -> Out {
        let (dst, src) = macs(frame);
        if !src.is_group() {
            self.fdb.insert(src, from.code().to_ne_bytes());
        }
        if dst.is_group() {
            return Out::Flood;
        }
        match self.fdb.get(&dst).map(|&p| u32::from_ne_bytes(p)) {
            Some(p) if p == from.code() => Out::Drop,
            Some(p) => Out::One(Port::from_code(p)),
            None => Out::Flood,
        }
    }

    /// Forgets a MAC (its port went away).
    pub fn forget(&mut self, mac: Mac) {
        self.fdb.remove(&mac);
    }
}

/// Frames kept back to back in one buffer: a list that, once warm, allocates nothing.
#[derive(Debug, Default)]
pub struct Frames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Frames {
    /// Appends a copy of `frame`.
    pub fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
    }

    /// The frames, in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(a, b)| &self.bytes[a..b])
    }

    /// Empties the list, keeping its room.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Container, Container) {
        let sn = Subnet::parse("10.1.0.0/24").unwrap();
        (
            Container::new("a".into(), Mac([2, 0, 0, 0, 0, 1]), sn.host(1), sn, 0),
            Container::new("b".into(), Mac([2, 0, 0, 0, 0, 2]), sn.host(2), sn, 1),
        )
    }

    #[test]
    fn ping_resolves_arp_then_gets_a_reply() {
        let (mut a, mut b) = pair();
        let mut ids = Ids::default();
        let mut out = Vec::new();
        let seq = a.ping(Instant::ZERO, b.ip, &mut ids, &mut out);
        assert_eq!(out.len(), 1, "an ARP request first");
        let req = out.pop().unwrap();
        assert_eq!(b.receive(&req, &mut ids, &mut out), Received::Arp);
        let reply = out.pop().unwrap();
        assert_eq!(a.receive(&reply, &mut ids, &mut out), Received::Arp);
        let echo = out.pop().unwrap();
        assert_eq!(b.receive(&echo, &mut ids, &mut out), Received::Ip { src: a.ip, echo_reply: None });
        let pong = out.pop().unwrap();
        assert_eq!(a.receive(&pong, &mut ids, &mut out), Received::Ip { src: b.ip, echo_reply: Some(seq) });
        assert_eq!(a.pings_answered, 1);
        // Every frame carried a distinct id at its end.
        let ids_seen: Vec<_> = [&req, &reply, &echo, &pong].iter().map(|f| frame_id(f).unwrap()).collect();
        assert_eq!(ids_seen, vec![1, 2, 3, 4]);
    }

    #[test]
    fn other_subnets_are_not_answered() {
        let (mut a, _) = pair();
        let other = Subnet::parse("10.2.0.0/24").unwrap();
        let mut c = Container::new("c".into(), Mac([2, 0, 0, 0, 0, 3]), other.host(1), other, 2);
        let mut ids = Ids::default();
        let mut out = Vec::new();
        c.ping(Instant::ZERO, a.ip, &mut ids, &mut out);
        let req = out.pop().unwrap();
        assert_eq!(a.receive(&req, &mut ids, &mut out), Received::Ignored);
        assert!(out.is_empty());
    }

    #[test]
    fn the_bridge_learns_and_floods_unknown_destinations() {
        let mut br = Bridge::default();
        let f = |d: [u8; 6], s: [u8; 6]| [&d[..], &s[..], &[8, 0]].concat();
        let (x, y) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        assert_eq!(br.forward(Port::Container(0), &f(y, x)), Out::Flood);
        assert_eq!(br.forward(Port::Router, &f(x, y)), Out::One(Port::Container(0)));
        assert_eq!(br.forward(Port::Container(0), &f(y, x)), Out::One(Port::Router));
        assert_eq!(br.forward(Port::Router, &f(y, y)), Out::Drop);
    }

    #[test]
    fn frames_come_back_as_pushed_and_a_cleared_list_is_empty() {
        let mut l = Frames::default();
        let (a, b, c) = (vec![1u8; 60], vec![], vec![2u8; 1514]);
        for f in [&a, &b, &c] {
            l.push(f);
        }
        assert_eq!(l.iter().collect::<Vec<_>>(), [&a[..], &b[..], &c[..]]);
        l.clear();
        assert_eq!(l.iter().count(), 0);
        l.push(&c);
        assert_eq!(l.iter().collect::<Vec<_>>(), [&c[..]]);
    }
}
