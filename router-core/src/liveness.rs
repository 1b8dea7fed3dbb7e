//! UDP liveness: heartbeats on each connection's UDP path, the evidence that each direction
//! carries datagrams, probing of a silent neighbour we send data to, and the link changes
//! (established, lost) that follow. A link is established only while UDP is proven both
//! ways; routes use established links only.

use std::net::SocketAddr;

use crate::conn::{LinkChange, LinkReason};
use crate::peer::ConnId;
use crate::router::{Event, Router};
use crate::stats::DropReason;
use crate::time::Instant;
use crate::timer::{ConnTimer, Timer};
use crate::wire::control::Message;
use crate::wire::datagram::{emit_heartbeat, Heartbeat, HEADER_LEN, HEARTBEAT_BODY_LEN};

/// Link changes kept per connection for status.
const LINK_LOG_MAX: usize = 8;

impl Router {
    /// Queues one heartbeat to the peer (a probe when `reply` is set).
    fn emit_udp_heartbeat(&mut self, now: Instant, id: ConnId, reply: bool) {
        let me = self.config.name;
        // Echoes prove our direction about once a period, but one may come up to two periods
        // after the last (our beat skipped after an answer, or crossing the peer's in flight):
        // a proof older than two and a half periods means an echo went missing. And while an
        // echo that late could miss the timeout, every heartbeat asks: the next heartbeat may
        // itself come a period from now, too late to ask then.
        let (period, timeout) = (self.config.udp_heartbeat, self.config.udp_timeout);
        let stale = (period * 2 + period / 2).min(timeout.saturating_sub(period * 2));
        let Some(c) = self.conns.get_mut(&id) else { return };
        let Some(p) = c.peer.as_ref() else { return };
        c.udp_seq = c.udp_seq.wrapping_add(1).max(1);
        // Ask for a TCP ack while our direction is unproven or its last proof is getting old
        // (the peer's echoes travel over UDP and may be lost); otherwise the echo in the
        // peer's next heartbeat is proof enough, and an idle link costs no TCP traffic.
        let ack = !c.udp_tx_ok || now >= c.last_udp_ack + stale;
        let hb = Heartbeat { session: p.session, seq: c.udp_seq, echo: c.udp_rx_seq, reply, ack };
        let mut buf = [0u8; HEADER_LEN + HEARTBEAT_BODY_LEN];
        let n = emit_heartbeat(me, p.name, hb, &mut buf);
        let to = p.udp_addr;
        let seal = self.seal_for(id);
        self.out.datagram(to, &buf[..n], None, seal);
    }

    /// The heartbeat timer: the evidence check for data we sent, probing bookkeeping, then a
    /// heartbeat when one is due, then the next deadline.
    pub(crate) fn send_udp_heartbeat(&mut self, now: Instant, id: ConnId) {
        let (probe_after, probe_timeout) = (self.config.probe_after, self.config.probe_timeout);
        let period = self.config.udp_heartbeat;
        let Some(c) = self.conns.get_mut(&id) else { return };
        if c.peer.is_none() {
            return;
        }
        // Data went out and nothing came back within `probe_after`: start probing.
        if let Some(t) = c.sent_unheard {
            if c.last_heard() >= t {
                // Answered. It ends at its deadline, not before: watches, and so requests
                // for answers, start at most once per `probe_after`.
                if now >= t + probe_after {
                    c.sent_unheard = None;
                }
            } else if now >= t + probe_after {
                c.sent_unheard = None;
                if c.probing_since.is_none() && c.established() {
                    c.probing_since = Some(now);
                    c.next_probe = now;
                }
            }
        }
        if let Some(since) = c.probing_since {
            if c.last_heard() > since {
                c.probing_since = None;
                // The probes stood in for the regular beats due meanwhile: skip those, so the
                // link keeps its phase (the one its router's other links share).
                if c.next_heartbeat <= now {
                    let p = period.as_micros().max(1);
                    let behind = (now - c.next_heartbeat).as_micros() / p + 1;
                    c.next_heartbeat += period * u32::try_from(behind).unwrap_or(u32::MAX);
                }
            } else if now - since >= probe_timeout {
                // We kept sending and heard nothing at all: the path is silently dead.
                c.probing_since = None;
                c.udp_rx_ok = false;
                c.udp_tx_ok = false;
                self.link_changed(now, id, LinkReason::ProbeTimeout);
            }
        }
        let c = &self.conns[&id];
        if c.probing_since.is_some() {
            if now >= c.next_probe {
                self.emit_udp_heartbeat(now, id, true);
                self.conns.get_mut(&id).expect("checked").next_probe = now + self.config.probe_interval;
            }
        } else if now >= c.next_heartbeat {
            if c.udp_tx_ok {
                self.regular_beat(now, id);
                self.beat_along(now, id);
            } else {
                self.emit_udp_heartbeat(now, id, false);
                self.conns.get_mut(&id).expect("checked").next_heartbeat = now + self.config.udp_heartbeat_fast;
            }
        }
        self.arm_udp_heartbeat(now, id);
    }

    /// Arms the heartbeat timer: the next probe or heartbeat, or the evidence check for
    /// data sent.
    fn arm_udp_heartbeat(&mut self, now: Instant, id: ConnId) {
        let probe_after = self.config.probe_after;
        let c = &self.conns[&id];
        let beat = if c.probing_since.is_some() { c.next_probe } else { c.next_heartbeat };
        // A watch already answered needs no wake-up at its deadline.
        let watch = c.sent_unheard.filter(|&t| c.last_heard() < t);
        let next = watch.map_or(beat, |t| beat.min(t + probe_after));
        self.timers.set(Timer::Conn(id, ConnTimer::UdpHeartbeat), next.max(now));
    }

    /// Idle links beat together: a regular heartbeat takes along every other established,
    /// unprobed link's that is due within half a period. After a period or two all of a
    /// router's links share one phase, and it wakes once a period rather than once per link.
    fn beat_along(&mut self, now: Instant, first: ConnId) {
        let period = self.config.udp_heartbeat;
        let soon = now + period / 2;
        let along: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|&(&id, c)| {
                id != first
                    && c.peer.is_some()
                    && c.udp_tx_ok
                    && c.probing_since.is_none()
                    && c.next_heartbeat > now
                    && c.next_heartbeat <= soon
            })
            .map(|(&id, _)| id)
            .collect();
        for id in along {
            self.regular_beat(now, id);
            self.arm_udp_heartbeat(now, id);
        }
    }

    /// A regular heartbeat on an established link, and the next a period later. Skipped when
    /// we answered the peer's data within the last half period: an answer is a heartbeat
    /// (our liveness, an echo, a request for an ack when needed), and the peer's proof of its
    /// own direction waits at most a period and a half for our next echo, well within the
    /// age at which it asks for an ack. The link keeps its phase.
    fn regular_beat(&mut self, now: Instant, id: ConnId) {
        let period = self.config.udp_heartbeat;
        let c = &self.conns[&id];
        if c.answered_at.is_none_or(|t| now >= t + period / 2) {
            self.emit_udp_heartbeat(now, id, false);
        }
        self.conns.get_mut(&id).expect("caller checked").next_heartbeat = now + period;
    }

    /// We are sending data to this neighbour: if nothing comes back from it within
    /// `probe_after`, the heartbeat timer starts probing. Returns whether this send starts
    /// such a watch: then the datagram asks the neighbour for a heartbeat at once, which
    /// settles the watch without a probe when the path works (one small datagram, where a
    /// probe costs a heartbeat each way, an acknowledgement over TCP and a timer).
    ///
    /// Flooded data starts a watch at most once per `udp_heartbeat` on a link: every flood
    /// crosses every link of its tree, and a watch per flood would double the cost of
    /// broadcasts across the whole network. A link that carries only floods is watched once
    /// a period (and its answers stand in for regular heartbeats, so this costs about
    /// nothing); one that carries unicast data, every `probe_after`.
    #[inline]
    pub(crate) fn note_sent(&mut self, now: Instant, id: ConnId, flood: bool) -> bool {
        let periods = (self.config.probe_after, self.config.udp_heartbeat);
        let Some(c) = self.conns.get_mut(&id) else { return false };
        c.watch(id, &mut self.timers, now, periods, flood)
    }

    /// A frames datagram from this neighbour asked for a heartbeat: send one at once (at
    /// most one per half `probe_after`; an honest neighbour asks at most once per
    /// `probe_after`).
    pub(crate) fn answer_data(&mut self, now: Instant, id: ConnId) {
        let gap = self.config.probe_after / 2;
        let Some(c) = self.conns.get_mut(&id) else { return };
        if c.answered_at.is_some_and(|t| now < t + gap) {
            return;
        }
        c.answered_at = Some(now);
        self.emit_udp_heartbeat(now, id, false);
    }

    /// A UDP heartbeat arrived: the peer-to-us direction works. Acknowledge it over TCP, and
    /// at once over UDP if it is a probe.
    pub(crate) fn handle_heartbeat(
        &mut self,
        now: Instant,
        from: SocketAddr,
        src: crate::PeerName,
        dst: crate::PeerName,
        hb: Heartbeat,
    ) {
        let id = match self.by_peer.get(&src) {
            Some(&id) if dst == self.config.name && self.conns[&id].session == hb.session => id,
            _ => return self.stats.drop(DropReason::BadHeartbeat, 1),
        };
        let c = self.conns.get_mut(&id).expect("by_peer holds open connections");
        c.last_udp_rx = now;
        c.udp_rx_seq = c.udp_rx_seq.max(hb.seq);
        if c.udp_bound != Some(from) {
            if let Some(old) = c.udp_bound.replace(from) {
                self.by_udp.remove(&old);
            }
            c.peer.as_mut().expect("up").udp_addr = from;
            self.by_udp.insert(from, id);
        }
        let was_rx = c.udp_rx_ok;
        c.udp_rx_ok = true;
        // An open watch on data we sent is answered: its deadline needs no wake-up. Also when
        // data answered it first (frames do not re-arm the timer; this heartbeat does).
        let answered = c.sent_unheard.is_some() && c.probing_since.is_none();
        let sent = c.udp_seq;
        // Our heartbeats echo `seq`; they prove the peer's direction only if they arrive, so
        // acknowledge over TCP when asked, for probes, and while our own direction is unproven.
        if hb.ack || hb.reply || !c.udp_tx_ok {
            self.send_msg(id, &Message::UdpAck { seq: hb.seq });
        }
        if hb.reply {
            self.emit_udp_heartbeat(now, id, false);
        }
        if hb.echo != 0 && hb.echo <= sent {
            self.tx_proven(now, id, hb.echo);
        }
        if !was_rx {
            self.link_changed(now, id, LinkReason::Confirmed);
        }
        if answered && self.conns.contains_key(&id) {
            self.arm_udp_heartbeat(now, id);
        }
    }

    pub(crate) fn handle_udp_ack(&mut self, now: Instant, id: ConnId, seq: u32) {
        let c = &self.conns[&id];
        // Acks for heartbeats we never sent are ignored.
        if seq == 0 || seq > c.udp_seq {
            return;
        }
        self.tx_proven(now, id, seq);
    }

    /// The peer proved it received our heartbeat `seq` (by TCP ack or UDP echo).
    fn tx_proven(&mut self, now: Instant, id: ConnId, seq: u32) {
        let c = self.conns.get_mut(&id).expect("caller checked");
        // Only a heartbeat newer than any proven before shows the path works *now*: a peer
        // that hears nothing from us keeps echoing the last seq it heard, and that must not
        // keep our direction alive.
        if seq <= c.proven_seq {
            return;
        }
        c.last_udp_ack = now;
        c.proven_seq = seq;
        c.rounds += 1;
        if !c.udp_tx_ok && c.rounds >= c.rounds_needed {
            c.udp_tx_ok = true;
            self.link_changed(now, id, LinkReason::Confirmed);
        } else {
            self.arm_udp_timeout(id);
        }
    }

    /// Re-evaluates a link after one of its directions changed state.
    fn link_changed(&mut self, now: Instant, id: ConnId, reason: LinkReason) {
        let (recover, flap_window) = (self.config.recover_rounds, self.config.flap_window);
        let c = self.conns.get_mut(&id).expect("caller checked");
        let peer = c.peer.as_ref().expect("up").name;
        let established = c.established();
        if established == c.established_at.is_some() {
            self.arm_udp_timeout(id);
            return;
        }
        self.own_dirty = true;
        if c.link_log.len() == LINK_LOG_MAX {
            c.link_log.pop_front();
        }
        c.link_log.push_back(LinkChange { at: now, established, reason });
        if established {
            c.established_at = Some(now);
            if c.rounds_needed > 1 {
                c.recovered_at = Some(now);
            }
            self.stats.links_established += 1;
            tracing::info!(%peer, "link established");
            self.push_event(Event::LinkEstablished { peer });
            // A link that (re)appears may join two parts of the network that drifted apart
            // (a healed partition): compare views across it now, not at the next period.
            let summary = self.topology.summary();
            self.send_gossip(id, &Message::GossipSummary(summary));
            if !self.conns[&id].pmtu.verified {
                self.pmtu_start(now, id);
            }
        } else {
            c.established_at = None;
            // Hysteresis: a link that fails again soon after coming back must prove itself longer.
            let flapping = c.recovered_at.is_some_and(|t| now - t < flap_window);
            c.rounds_needed = if flapping { (c.rounds_needed * 2).min(64) } else { recover.max(1) };
            c.rounds = 0;
            c.proven_seq = c.udp_seq;
            c.udp_tx_ok = false;
            self.stats.count_link_loss(reason);
            tracing::info!(%peer, %reason, "link lost");
            self.push_event(Event::LinkLost { peer, reason });
            self.conns.get_mut(&id).expect("caller checked").next_heartbeat = now;
            self.timers.set(Timer::Conn(id, ConnTimer::UdpHeartbeat), now);
        }
        self.arm_udp_timeout(id);
    }

    /// Arms the UDP timeout at the moment the first proven direction expires unless news
    /// comes: exactly, later or earlier (moving a deadline later costs the timer table a
    /// lookup, see `TimerTable`). Every heartbeat that proves our direction re-arms it, so
    /// on a live link the check does not wake the router; it fires when a direction has
    /// really been silent that long. Data between heartbeats does not re-arm it (a timer
    /// operation per datagram): a link that falls silent right after such data is checked
    /// once early, finds nothing expired, and re-arms.
    fn arm_udp_timeout(&mut self, id: ConnId) {
        let c = &self.conns[&id];
        let timeout = self.config.udp_timeout;
        let due = [(c.udp_rx_ok, c.last_udp_rx), (c.udp_tx_ok, c.last_udp_ack)]
            .into_iter()
            .filter(|(ok, _)| *ok)
            .map(|(_, t)| t + timeout)
            .min();
        match due {
            Some(at) => self.timers.set(Timer::Conn(id, ConnTimer::UdpTimeout), at),
            None => self.timers.cancel(Timer::Conn(id, ConnTimer::UdpTimeout)),
        }
    }

    pub(crate) fn check_udp_timeout(&mut self, now: Instant, id: ConnId) {
        let timeout = self.config.udp_timeout;
        let Some(c) = self.conns.get_mut(&id) else { return };
        let mut reason = None;
        if c.udp_rx_ok && c.last_udp_rx + timeout <= now {
            c.udp_rx_ok = false;
            reason = Some(LinkReason::HeartbeatTimeout);
        }
        if c.udp_tx_ok && c.last_udp_ack + timeout <= now {
            c.udp_tx_ok = false;
            reason = reason.or(Some(LinkReason::AckTimeout));
            // Probe quickly again until the peer acknowledges.
            c.next_heartbeat = now;
            self.timers.set(Timer::Conn(id, ConnTimer::UdpHeartbeat), now);
        }
        match reason {
            Some(r) => self.link_changed(now, id, r),
            None => self.arm_udp_timeout(id),
        }
    }
}
