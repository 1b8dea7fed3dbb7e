//! Path MTU discovery on each link's UDP path.
//!
//! The largest UDP payload that passes to a neighbour is searched for with probes: datagrams
//! padded to the size under test, sent with the driver's "don't fragment" setting, which the
//! neighbour acknowledges over TCP. The first round, at the end of the handshake, tries the
//! ceiling alone (the local interface's limit: the common case passes at once, before the
//! link is established); each later round tries a ladder of sizes between what is known to
//! pass and what may, and a size counts as too big only when it went unanswered twice on an
//! established link (a lost probe is not a narrow path). The search settles when the two
//! bounds meet, and starts again after `pmtu_recheck`, when the link comes back unsettled,
//! and when the driver reports a smaller path MTU (EMSGSIZE, or an ICMP error).
//!
//! Until it settles, frames are sized for the upper bound (optimistic, as a kernel's own
//! discovery is); once it settles, for the verified size, which the router also advertises
//! in its topology entry so that peers size frames for whole relayed paths.

use std::net::SocketAddr;

use crate::conn::{Pmtu, PMTU_PRECISION};
use crate::peer::{ConnId, PeerName};
use crate::router::Router;
use crate::time::Instant;
use crate::timer::{ConnTimer, Timer};
use crate::wire::control::Message;
use crate::wire::datagram::push_probe;

/// Sizes tried in one round after the first.
const LADDER: u16 = 7;
/// IPv4 and UDP headers.
const IPV4_UDP: usize = 28;
/// IPv6 and UDP headers.
const IPV6_UDP: usize = 48;

impl Router {
    /// The largest UDP payload we ever send: the ceiling of every search.
    pub(crate) fn pmtu_ceiling(&self) -> u16 {
        u16::try_from(self.config.datagram_max.min(65_507)).unwrap_or(u16::MAX)
    }

    fn pmtu_floor(&self) -> u16 {
        u16::try_from(self.config.datagram_min).unwrap_or(u16::MAX).min(self.pmtu_ceiling())
    }

    /// What sealing adds to a datagram (nothing without a password).
    pub(crate) fn seal_overhead(&self) -> usize {
        if self.config.password.is_some() {
            crate::crypto::DATAGRAM_OVERHEAD
        } else {
            0
        }
    }

    /// A new connection's starting point: the ceiling, unverified.
    pub(crate) fn pmtu_initial(&self) -> Pmtu {
        let hi = self.pmtu_ceiling();
        Pmtu { size: hi, lo: self.pmtu_floor(), hi, ..Pmtu::default() }
    }

    /// Starts a search on `id` between the floor and the ceiling. A verified size stays in
    /// use until the search settles again.
    pub(crate) fn pmtu_start(&mut self, now: Instant, id: ConnId) {
        let (floor, ceiling) = (self.pmtu_floor(), self.pmtu_ceiling());
        let Some(c) = self.conns.get_mut(&id) else { return };
        let p = &mut c.pmtu;
        p.lo = floor;
        p.hi = ceiling;
        p.missed.clear();
        p.round.clear();
        self.pmtu_round(now, id, true);
    }

    /// Sends one round of probes (the upper bound alone when `first`), or settles the
    /// search when the bounds have met.
    fn pmtu_round(&mut self, now: Instant, id: ConnId, first: bool) {
        let me = self.config.name;
        let overhead = self.seal_overhead();
        let seal = self.seal_for(id);
        let timeout = self.config.pmtu_probe_timeout;
        let recheck = self.config.pmtu_recheck;
        let Some(c) = self.conns.get_mut(&id) else { return };
        let Some(peer) = c.peer.as_ref() else { return };
        let (to, session, dst) = (peer.udp_addr, peer.session, peer.name);
        let p = &mut c.pmtu;
        if p.hi <= p.lo.saturating_add(PMTU_PRECISION) {
            let was = (p.size, p.verified);
            p.size = p.lo;
            p.verified = true;
            p.round.clear();
            p.missed.clear();
            self.timers.set(Timer::Conn(id, ConnTimer::Pmtu), now + recheck);
            if was != (p.lo, true) {
                tracing::debug!(conn = %id, peer = %dst, size = p.lo, "path MTU settled");
                self.own_dirty = true;
            }
            return;
        }
        p.round.clear();
        let mut sizes: Vec<u16> = if first {
            vec![p.hi]
        } else {
            let (lo, hi) = (u32::from(p.lo), u32::from(p.hi));
            (1..=u32::from(LADDER)).map(|k| (lo + (hi - lo) * k / u32::from(LADDER)) as u16).collect()
        };
        sizes.extend(p.missed.iter().copied().filter(|&s| s > p.lo && s <= p.hi));
        sizes.sort_unstable();
        sizes.dedup();
        let mut probes = Vec::with_capacity(sizes.len());
        for s in sizes {
            p.next_id = p.next_id.wrapping_add(1);
            p.round.push((p.next_id, s, false));
            probes.push((p.next_id, s));
        }
        let mut buf = Vec::new();
        for (pid, size) in probes {
            buf.clear();
            push_probe(me, dst, session, pid, usize::from(size).saturating_sub(overhead), &mut buf);
            self.out.datagram(to, &buf, None, seal);
            self.stats.pmtu_probes_sent += 1;
        }
        self.timers.set(Timer::Conn(id, ConnTimer::Pmtu), now + timeout);
    }

    /// A probe from `src` reached us: acknowledge it over the connection it belongs to.
    pub(crate) fn handle_probe(&mut self, src: PeerName, dst: PeerName, session: u64, probe: u32) {
        let Some(&id) = self.by_peer.get(&src) else {
            return self.stats.drop(crate::stats::DropReason::UnknownSender, 1);
        };
        if dst != self.config.name || self.conns.get(&id).is_none_or(|c| c.session != session) {
            return self.stats.drop(crate::stats::DropReason::BadHeartbeat, 1);
        }
        self.send_msg(id, &Message::PmtuAck { id: probe });
    }

    /// The neighbour on `id` acknowledged probe `probe`: its size passes.
    pub(crate) fn handle_pmtu_ack(&mut self, now: Instant, id: ConnId, probe: u32) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let p = &mut c.pmtu;
        let Some(at) = p.round.iter().position(|&(pid, _, _)| pid == probe) else { return };
        p.round[at].2 = true;
        p.lo = p.lo.max(p.round[at].1);
        // Everything answered, or the upper bound itself: nothing more to learn this round.
        if p.round.iter().all(|r| r.2) || p.lo >= p.hi {
            self.pmtu_end_round(now, id);
        }
    }

    /// The round's timer: probes still unanswered have failed once (or twice). Before the
    /// link is established a silence proves nothing (UDP may not pass at all yet): the search
    /// waits for the link instead.
    fn pmtu_end_round(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let established = c.established();
        let p = &mut c.pmtu;
        let round = std::mem::take(&mut p.round);
        if !established && !round.iter().any(|r| r.2) {
            return;
        }
        let mut missed = Vec::new();
        for &(_, s, acked) in &round {
            if acked || s <= p.lo {
                continue;
            }
            if p.missed.contains(&s) {
                p.hi = p.hi.min(s - 1);
            } else {
                missed.push(s);
            }
        }
        p.hi = p.hi.max(p.lo);
        p.missed = missed;
        if !p.verified {
            p.size = p.hi;
        }
        self.pmtu_round(now, id, false);
    }

    /// The path MTU timer of connection `id`: a round ended, or a recheck is due.
    pub(crate) fn pmtu_timer(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(&id) else { return };
        if !c.pmtu.round.is_empty() {
            self.pmtu_end_round(now, id);
        } else if c.established() {
            self.pmtu_start(now, id);
        }
        // Otherwise the recheck waits for the link to come back.
    }

    /// The driver learned that datagrams to `to` larger than `mtu` bytes (a whole IP packet:
    /// EMSGSIZE, or an ICMP "fragmentation needed" or "packet too big" the kernel received)
    /// do not pass. Frames to the neighbour there are sized below it at once, and the search
    /// starts again to verify it. Reports that would raise the size, or that name no
    /// neighbour, change nothing.
    pub fn handle_path_mtu(&mut self, now: Instant, to: SocketAddr, mtu: usize) {
        let headers = if to.is_ipv4() { IPV4_UDP } else { IPV6_UDP };
        let floor = self.pmtu_floor();
        let payload = u16::try_from(mtu.saturating_sub(headers)).unwrap_or(u16::MAX).max(floor);
        let id = self
            .by_peer
            .values()
            .copied()
            .find(|id| self.conns.get(id).and_then(|c| c.peer.as_ref()).is_some_and(|p| p.udp_addr == to));
        let Some(id) = id else { return };
        let Some(c) = self.conns.get_mut(&id) else { return };
        if payload >= c.pmtu.size {
            return;
        }
        self.stats.pmtu_reports += 1;
        let p = &mut c.pmtu;
        p.hi = payload;
        p.lo = floor.min(payload);
        p.size = payload;
        p.verified = false;
        p.missed.clear();
        p.round.clear();
        self.own_dirty = true;
        let established = c.established();
        if established {
            self.pmtu_round(now, id, true);
        }
        self.commit(now);
    }

    /// The largest plaintext datagram (before sealing) that passes on `id`'s link now.
    pub(crate) fn link_room(&self, id: ConnId) -> usize {
        let size = self.conns.get(&id).map_or(self.pmtu_ceiling(), |c| c.pmtu.size);
        usize::from(size).saturating_sub(self.seal_overhead())
    }
}
