//! The data plane: MAC learning and forwarding of captured and received frames.

use std::net::SocketAddr;

use crate::conn::Conn;
use crate::crypto::OpenError;
use crate::mac_cache::{Learned, MacOwner};
use crate::peer::{ConnId, Mac, PeerName};
use crate::router::Router;
use crate::sorted::SortedMap;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::timer::Timer;
use crate::toobig::{self, Answer};
use crate::wire::datagram::{
    Datagram, Header, Kind, FLAG_ENCRYPTED, FRAMES_HEADER_LEN, FRAME_MIN, FRAME_PREFIX_LEN, HEADER_LEN,
};

/// A frames datagram's header and one frame's length prefix: what a datagram carrying a
/// single frame adds to it.
const FRAME_OVERHEAD: usize = FRAMES_HEADER_LEN + FRAME_PREFIX_LEN;

/// What the forwarding decision for a captured frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The destination is on our own bridge: nothing to send.
    Local,
    /// Send towards `dst` through the neighbour `via`.
    Unicast {
        /// The peer the destination MAC lives behind.
        dst: PeerName,
        /// The next hop.
        via: PeerName,
    },
    /// Flood along our broadcast tree.
    Flood,
    /// Dropped, and why.
    Drop(DropReason),
}

/// Whether `frame` announces where its sender is: a gratuitous ARP (request or reply whose
/// sender and target addresses are the same), as a container sends when it is attached or
/// moved.
fn announces(frame: &[u8]) -> bool {
    frame.len() >= 42 && frame[12..14] == [0x08, 0x06] && frame[28..32] == frame[38..42]
}

fn macs(frame: &[u8]) -> (Mac, Mac) {
    let dst = Mac(frame[0..6].try_into().expect("length checked"));
    let src = Mac(frame[6..12].try_into().expect("length checked"));
    (dst, src)
}

impl Router {
    /// Learns from and decides the fate of a frame captured on the local bridge, without
    /// queueing anything. Never allocates (unless `lazy_routes` has a recomputation due).
    pub fn decide(&mut self, now: Instant, frame: &[u8]) -> Decision {
        if frame.len() < FRAME_MIN {
            return Decision::Drop(DropReason::Malformed);
        }
        if frame.len() > usize::from(u16::MAX) {
            return Decision::Drop(DropReason::Oversize);
        }
        let (dst, src) = macs(frame);
        if src.is_group() {
            return Decision::Drop(DropReason::BadSourceMac);
        }
        let decision = match if dst.is_group() { None } else { self.macs.lookup(dst) } {
            Some(MacOwner::Local) => Decision::Local,
            Some(MacOwner::Peer(p)) => match self.routes_now(now).next_hop(p) {
                Some(via) => Decision::Unicast { dst: p, via },
                None => {
                    // Its peer is gone: forget it, and flood so that wherever it went finds it.
                    self.macs.remove(dst);
                    Decision::Flood
                }
            },
            None => Decision::Flood,
        };
        // Floods are charged to their source's budget, judged before this frame teaches it.
        // A refused frame still teaches: a container that has just started is a learned
        // source by its next try, with a budget of its own.
        let admitted = decision != Decision::Flood || {
            let learned = self.macs.lookup(src) == Some(MacOwner::Local);
            self.flood.admit(now, src, learned)
        };
        self.learn(now, src, MacOwner::Local, announces(frame));
        if !admitted {
            return Decision::Drop(DropReason::FloodLimited);
        }
        decision
    }

    /// The longest frame to `frame`'s destination MAC that the router sends on without
    /// answering "too big": for a MAC known to live behind a peer, what the path there
    /// carries; otherwise no limit (`usize::MAX`: local and flooded frames are not cut). A
    /// driver that completes segmentation offload for the bridge cuts TCP segments to it, as
    /// a NIC cuts them to its link. Changes nothing but routes that are due.
    pub fn frame_limit(&mut self, now: Instant, frame: &[u8]) -> usize {
        // Short frames fit every path (the floor of path MTU discovery): no lookups for them.
        if frame.len() < FRAME_MIN || FRAME_OVERHEAD + frame.len() + self.seal_overhead() <= self.config.datagram_min {
            return usize::MAX;
        }
        let (dst, _) = macs(frame);
        let Some(MacOwner::Peer(p)) = self.macs.lookup(dst) else { return usize::MAX };
        let Some(via) = self.routes_now(now).next_hop(p) else { return usize::MAX };
        self.path_room(via, p).map_or(usize::MAX, |room| room.saturating_sub(FRAME_OVERHEAD))
    }

    /// Takes a frame captured on the local bridge.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.stats.frames_captured += 1;
        match self.decide(now, frame) {
            Decision::Local => self.stats.frames_local += 1,
            Decision::Drop(r) => self.stats.drop(r, 1),
            Decision::Unicast { dst, via } => {
                let h = self.header(self.config.name, dst, None);
                let Some(room) = self.path_room(via, dst) else {
                    return self.stats.drop(DropReason::NoRoute, 1);
                };
                if FRAME_OVERHEAD + frame.len() <= room {
                    if self.send_frame(now, via, &h, frame, room) {
                        self.stats.frames_sent += 1;
                    }
                    return;
                }
                match toobig::answer(frame, room.saturating_sub(FRAME_OVERHEAD)) {
                    Answer::Icmp(reply) => {
                        self.out.inject(&reply);
                        self.stats.icmp_too_big_sent += 1;
                    }
                    Answer::Fragments(parts) => {
                        self.stats.frames_fragmented += 1;
                        for p in parts {
                            if self.send_frame(now, via, &h, &p, room) {
                                self.stats.frames_sent += 1;
                            }
                        }
                    }
                    Answer::Drop => self.stats.drop(DropReason::TooBig, 1),
                }
            }
            Decision::Flood => {
                let me = self.config.name;
                let seq = self.new_seq();
                let h = self.header(me, PeerName::BROADCAST, Some(seq));
                let mut children = std::mem::take(&mut self.scratch_peers);
                children.clear();
                children.extend_from_slice(self.routes_now(now).broadcast_children(me));
                for &c in &children {
                    // A flood too big for a link is never answered: it is dropped there.
                    let room = self.by_peer.get(&c).map_or(0, |&id| self.link_room(id));
                    if FRAME_OVERHEAD + frame.len() <= room {
                        self.send_frame(now, c, &h, frame, room);
                    } else {
                        self.stats.drop(DropReason::TooBig, 1);
                    }
                }
                self.scratch_peers = children;
                self.stats.frames_flooded += 1;
            }
        }
    }

    /// A frames header; `seq: None` means "the open datagram's number, or a new one".
    fn header(&self, src: PeerName, dst: PeerName, seq: Option<u64>) -> Header {
        Header {
            kind: Kind::Frames,
            flags: 0,
            hop_limit: self.config.hop_limit,
            src,
            dst,
            seq: seq.unwrap_or(u64::MAX),
        }
    }

    fn new_seq(&mut self) -> u64 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    #[inline]
    fn learn(&mut self, now: Instant, mac: Mac, owner: MacOwner, announce: bool) -> Learned {
        let l = self.macs.learn(now, mac, owner, announce);
        match l {
            Learned::New => {
                self.stats.macs_learned += 1;
                if self.timers.get(Timer::MacSweep).is_none() {
                    self.timers.set(Timer::MacSweep, now + self.macs.expiry());
                }
            }
            Learned::Moved => self.stats.macs_moved += 1,
            Learned::Full => self.stats.macs_refused += 1,
            Learned::Stale => self.stats.macs_stale += 1,
            Learned::Refreshed | Learned::Group => {}
        }
        l
    }

    /// The connection of an established neighbour and its UDP address. Takes the two tables
    /// rather than the router, so that the caller can still queue output while it holds the
    /// connection.
    #[inline(always)]
    fn neighbour<'a>(
        by_peer: &SortedMap<PeerName, ConnId>,
        conns: &'a mut SortedMap<ConnId, Conn>,
        via: PeerName,
    ) -> Option<(ConnId, &'a mut Conn, SocketAddr)> {
        let &id = by_peer.get(&via)?;
        let c = conns.get_mut(&id).filter(|c| c.established())?;
        let to = c.peer.as_ref()?.udp_addr;
        Some((id, c, to))
    }

    /// The room for a frames datagram (plaintext, before sealing) to `dst` through the
    /// neighbour `via`: our link's path MTU, and no more than the smallest one advertised
    /// along our route to `dst`. `None` when `via` is no neighbour.
    fn path_room(&self, via: PeerName, dst: PeerName) -> Option<usize> {
        let &id = self.by_peer.get(&via)?;
        let path =
            self.routes.path_mtu(dst).map_or(usize::MAX, |m| usize::from(m).saturating_sub(self.seal_overhead()));
        Some(self.link_room(id).min(path))
    }

    /// Queues one frame to a neighbour, in datagrams of at most `max` bytes. Returns whether
    /// it was queued. A header whose sequence number is `u64::MAX` joins the open datagram to
    /// that neighbour or takes a new number.
    fn send_frame(&mut self, now: Instant, via: PeerName, h: &Header, frame: &[u8], max: usize) -> bool {
        let Some((conn, _, to)) = Self::neighbour(&self.by_peer, &mut self.conns, via) else {
            self.stats.drop(DropReason::NoRoute, 1);
            return false;
        };
        if !self.out.has_room(frame.len() + 2 + FRAMES_HEADER_LEN) {
            self.stats.drop(DropReason::QueueFull, 1);
            return false;
        }
        let seal = self.seal_for(conn);
        let mut h = *h;
        if h.seq == u64::MAX {
            h.seq = match self.out.open_seq(to, &h, frame.len(), max, seal) {
                Some(seq) => seq,
                None => self.new_seq(),
            };
        }
        self.out.frame(to, &h, frame, max, seal);
        if self.note_sent(now, conn, h.dst == PeerName::BROADCAST) {
            self.out.ask_answer();
        }
        true
    }

    /// Queues a copy of a received datagram to a neighbour with one hop less.
    ///
    /// The hot path of every flood: it finds the connection once for its address and for
    /// [`Router::note_sent`]'s watch.
    fn relay(&mut self, now: Instant, via: PeerName, bytes: &[u8], hop_limit: u8, frames: u64, flood: bool) {
        let periods = (self.config.probe_after, self.config.udp_heartbeat);
        let sealed = self.config.password.is_some();
        let overhead = self.seal_overhead();
        let Some((id, c, to)) = Self::neighbour(&self.by_peer, &mut self.conns, via) else {
            return self.stats.drop(DropReason::NoRoute, frames);
        };
        if !self.out.has_room(bytes.len()) {
            return self.stats.drop(DropReason::QueueFull, frames);
        }
        if usize::from(c.pmtu.size) < bytes.len() + overhead {
            return self.stats.drop(DropReason::TooBig, frames);
        }
        let watch = c.watch(id, &mut self.timers, now, periods, flood);
        self.out.datagram(to, bytes, Some(hop_limit), sealed.then_some(id));
        if watch {
            self.out.ask_answer();
        }
        self.stats.frames_relayed += frames;
    }

    /// Takes a UDP datagram received from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        self.stats.udp_bytes_received += bytes.len() as u64;
        self.opened_len = 0;
        if self.config.password.is_none() {
            return self.process_datagram(now, from, bytes);
        }
        let mut buf = core::mem::take(&mut self.scratch_open);
        buf.clear();
        buf.extend_from_slice(bytes);
        match self.open_datagram(from, &mut buf) {
            Ok(n) => {
                self.process_datagram(now, from, &buf[..n]);
                self.opened_len = n;
            }
            Err(r) => self.stats.drop(r, 1),
        }
        self.scratch_open = buf;
    }

    /// Authenticates and decrypts a sealed datagram in place with the key of the neighbour
    /// that sent it: found by its address for frames, by the source name for heartbeats
    /// (which may come from a new address). Returns the length of the plaintext form.
    fn open_datagram(&mut self, from: SocketAddr, buf: &mut [u8]) -> Result<usize, DropReason> {
        let Some(head) = buf.get(..HEADER_LEN) else { return Err(DropReason::Malformed) };
        if head[2] & FLAG_ENCRYPTED == 0 {
            return Err(DropReason::Plaintext);
        }
        // Heartbeats and probes name their sender (they may come from a new address).
        let conn = if head[1] == 1 || head[1] == 3 {
            let src = PeerName(head[4..10].try_into().expect("6 bytes"));
            self.by_peer.get(&src)
        } else {
            self.by_udp.get(&from)
        };
        let keys = conn.and_then(|id| self.conns.get_mut(id)).and_then(|c| c.keys.as_deref_mut());
        let Some(keys) = keys else { return Err(DropReason::Unauthenticated) };
        keys.udp_rx.open(buf).map_err(|e| match e {
            OpenError::Unauthenticated => DropReason::Unauthenticated,
            OpenError::Replayed => DropReason::Replayed,
        })
    }

    /// Handles a datagram in its plaintext form.
    fn process_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(d) = Datagram::new_checked(bytes) else {
            return self.stats.drop(DropReason::Malformed, 1);
        };
        if d.flags() & FLAG_ENCRYPTED != 0 {
            return self.stats.drop(DropReason::Encrypted, 1);
        }
        if let Some(hb) = d.heartbeat() {
            self.handle_heartbeat(now, from, d.src(), d.dst(), hb);
            return self.commit(now);
        }
        if let Some((session, probe)) = d.probe() {
            self.handle_probe(d.src(), d.dst(), session, probe);
            return self.commit(now);
        }
        let Ok(frames) = d.frames() else {
            return self.stats.drop(DropReason::Malformed, 1);
        };
        let count = frames.clone().count() as u64;
        let Some(&conn) = self.by_udp.get(&from) else {
            return self.stats.drop(DropReason::UnknownSender, count);
        };
        let c = self.conns.get_mut(&conn).expect("by_udp holds open connections");
        c.last_udp_rx = now;
        if d.answer_requested() {
            self.answer_data(now, conn);
        }
        let (src, dst, hops) = (d.src(), d.dst(), d.hop_limit());
        let me = self.config.name;
        if src == me {
            return self.stats.drop(DropReason::Looped, count);
        }
        if !self.dedup.fresh(src, d.seq()) {
            return self.stats.drop(DropReason::Duplicate, count);
        }
        if dst == me {
            for f in frames {
                self.deliver(now, src, f);
            }
        } else if dst == PeerName::BROADCAST {
            for f in frames {
                self.deliver(now, src, f);
            }
            let mut children = std::mem::take(&mut self.scratch_peers);
            children.clear();
            children.extend_from_slice(self.routes_now(now).broadcast_children(src));
            if !children.is_empty() && hops <= 1 {
                self.stats.drop(DropReason::HopLimit, count * children.len() as u64);
            } else {
                for &c in &children {
                    self.relay(now, c, bytes, hops - 1, count, true);
                }
            }
            self.scratch_peers = children;
        } else if hops <= 1 {
            self.stats.drop(DropReason::HopLimit, count);
        } else {
            match self.routes_now(now).next_hop(dst) {
                Some(via) => self.relay(now, via, bytes, hops - 1, count, false),
                None => self.stats.drop(DropReason::NoRoute, count),
            }
        }
    }

    /// Learns the frame's source as living at `origin` and injects it into the bridge; but a
    /// late frame from a container that has just moved onto our bridge is dropped: injected,
    /// it would teach the bridge that the container lives behind the router.
    fn deliver(&mut self, now: Instant, origin: PeerName, frame: &[u8]) {
        let (_, src) = macs(frame);
        if !src.is_group()
            && self.learn(now, src, MacOwner::Peer(origin), announces(frame)) == Learned::Stale
            && self.macs.lookup(src) == Some(MacOwner::Local)
        {
            return self.stats.drop(DropReason::StaleSource, 1);
        }
        self.out.inject(frame);
        self.stats.frames_injected += 1;
    }

    pub(crate) fn sweep_macs(&mut self, now: Instant) {
        let (expired, next) = self.macs.sweep(now);
        self.stats.macs_expired += expired as u64;
        if let Some(at) = next {
            self.timers.set(Timer::MacSweep, at);
        }
    }
}
