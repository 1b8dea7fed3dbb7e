//! The control stream: preamble, handshake (with the PAKE when a password is set), duplicate
//! resolution and TCP heartbeats. UDP liveness is in `liveness.rs`.

use std::net::SocketAddr;

use crate::conn::{ConnError, Phase, Remote};
use crate::peer::ConnId;
use crate::router::{Event, Router};
use crate::time::Instant;
use crate::timer::{ConnTimer, Timer};
use crate::wire::control::{
    split_frame, Handshake, Message, RefuseReason, BODY_MAX, CONFIRM_LEN, FLAG_GIVEN, FRAME_HEADER_LEN, SEALED_BODY_MAX,
};
use crate::wire::preamble::{self, Preamble, PreambleError};

/// Addresses remembered for the password retry limit.
const AUTH_BLOCKED_MAX: usize = 4096;
/// Receive-buffer capacity an idle connection keeps.
const INBUF_KEEP: usize = 4096;

impl Router {
    /// Takes bytes read from a control connection.
    pub fn handle_stream(&mut self, now: Instant, id: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        if c.phase == Phase::Dialing {
            return;
        }
        self.stats.tcp_bytes_received += bytes.len() as u64;
        c.last_tcp_rx = now;
        c.inbuf.extend_from_slice(bytes);
        self.process_stream(now, id);
        self.commit(now);
    }

    fn process_stream(&mut self, now: Instant, id: ConnId) {
        let mut pos = 0;
        loop {
            let Some(c) = self.conns.get_mut(&id) else { return };
            let avail = &c.inbuf[pos..];
            if c.phase == Phase::Preamble {
                let Some(head) = avail.get(..preamble::LEN) else { break };
                let head: &[u8; preamble::LEN] = head.try_into().expect("LEN bytes");
                pos += preamble::LEN;
                match Preamble::parse(head) {
                    Ok(p) => match Preamble::OURS.negotiate(&p) {
                        Some(v) => {
                            c.version = v;
                            c.phase = Phase::Handshake;
                        }
                        None => {
                            let r = RefuseReason::NoCommonVersion;
                            return self.close(now, id, ConnError::Refused(r), Some(r));
                        }
                    },
                    Err(PreambleError::BadMagic) => {
                        let r = RefuseReason::BadMagic;
                        return self.close(now, id, ConnError::Refused(r), None);
                    }
                    Err(e @ PreambleError::Malformed) => {
                        self.stats.control_errors += 1;
                        return self.close(
                            now,
                            id,
                            ConnError::Malformed(e.to_string()),
                            Some(RefuseReason::ProtocolError),
                        );
                    }
                }
                continue;
            }
            let sealed = c.keys.as_ref().is_some_and(|k| k.rx_on);
            let max = if sealed { SEALED_BODY_MAX } else { BODY_MAX };
            let msg = match split_frame(avail, max) {
                Ok(None) => break,
                Ok(Some(n)) => {
                    let body = &avail[FRAME_HEADER_LEN..FRAME_HEADER_LEN + n];
                    pos += FRAME_HEADER_LEN + n;
                    if sealed {
                        self.scratch_record.clear();
                        self.scratch_record.extend_from_slice(body);
                        let keys = c.keys.as_mut().expect("sealed");
                        if !keys.open_record(&mut self.scratch_record) {
                            self.stats.control_errors += 1;
                            tracing::warn!(conn = %id, "control record failed authentication; closing");
                            return self.close(now, id, ConnError::Unauthenticated, None);
                        }
                        Message::parse(&self.scratch_record)
                    } else {
                        Message::parse(body)
                    }
                }
                Err(e) => Err(e),
            };
            match msg {
                Ok(m) => self.handle_message(now, id, m),
                Err(e) => {
                    self.stats.control_errors += 1;
                    tracing::debug!(conn = %id, error = %e, "malformed control message");
                    return self.close(now, id, e.into(), Some(RefuseReason::ProtocolError));
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.inbuf.drain(..pos);
            // A large gossip burst may have grown the buffer; idle connections give it back.
            if c.inbuf.is_empty() && c.inbuf.capacity() > INBUF_KEEP {
                c.inbuf = Vec::new();
            }
        }
    }

    fn handle_message(&mut self, now: Instant, id: ConnId, msg: Message) {
        let Some(c) = self.conns.get(&id) else { return };
        let phase = c.phase;
        match (phase, msg) {
            (_, Message::Refuse(r)) => self.close(now, id, ConnError::RefusedByPeer(r), None),
            (Phase::Handshake, Message::Handshake(h)) => self.handle_handshake(now, id, h),
            (Phase::Confirm, Message::Confirm(v)) => self.handle_confirm(now, id, &v),
            (Phase::Up, Message::Heartbeat) => {}
            (Phase::Up, Message::UdpAck { seq }) => self.handle_udp_ack(now, id, seq),
            (Phase::Up, Message::PmtuAck { id: probe }) => self.handle_pmtu_ack(now, id, probe),
            (Phase::Up, Message::GossipSummary(s)) => self.handle_summary(id, s),
            (Phase::Up, Message::GossipDigest(d)) => self.handle_digest(id, &d),
            (Phase::Up, Message::GossipUpdate(u)) => self.handle_update(id, u),
            (Phase::Up, Message::Ipam(u)) => self.handle_ipam(now, &u),
            (_, m) => {
                self.stats.control_errors += 1;
                let why = ConnError::Malformed(format!("unexpected {} in phase {phase:?}", message_name(&m)));
                self.close(now, id, why, Some(RefuseReason::ProtocolError));
            }
        }
    }

    fn handle_handshake(&mut self, now: Instant, id: ConnId, h: Handshake) {
        let refuse = |r: RefuseReason| Some(r);
        let verdict = if !h.name.is_valid() {
            refuse(RefuseReason::InvalidName)
        } else if h.name == self.config.name && h.uid == self.uid {
            refuse(RefuseReason::ConnectToSelf)
        } else if h.name == self.config.name {
            refuse(RefuseReason::NameCollision)
        } else if h.pake.is_some() != self.config.password.is_some() {
            refuse(RefuseReason::PasswordMismatch)
        } else {
            None
        };
        if let Some(r) = verdict {
            tracing::info!(conn = %id, peer = %h.name, reason = %r, "refusing connection");
            if r == RefuseReason::PasswordMismatch {
                self.password_failed(now, id);
            }
            return self.close(now, id, ConnError::Refused(r), Some(r));
        }
        let Some(theirs) = h.pake else { return self.complete_handshake(now, id, h) };
        // Password session: finish the PAKE, bind it to both handshakes, confirm the keys.
        // The confirmation is our last plaintext message; all we send after it is sealed.
        let c = self.conns.get_mut(&id).expect("handle_message checked the connection");
        let mut their_bytes = Vec::new();
        Message::Handshake(h.clone()).emit(&mut their_bytes);
        let pake = c.pake.take().expect("password connections start a PAKE in open_stream");
        let Some(keys) = pake.finish(&theirs, &c.hs_sent, &their_bytes[FRAME_HEADER_LEN..]) else {
            self.stats.control_errors += 1;
            let why = ConnError::Malformed("PAKE message is not a valid group element".into());
            return self.close(now, id, why, Some(RefuseReason::ProtocolError));
        };
        c.hs_sent = Vec::new();
        let confirm = keys.confirm_mine;
        self.out.message(id, &Message::Confirm(confirm), None);
        c.keys = Some(Box::new(keys));
        c.pending = Some(Box::new(h));
        c.phase = Phase::Confirm;
    }

    /// Password sessions: the peer's key confirmation. A mismatch means the passwords differ
    /// (the peer sees the same about ours); the connection closes without another word, since
    /// the peer could not read it.
    fn handle_confirm(&mut self, now: Instant, id: ConnId, theirs: &[u8; CONFIRM_LEN]) {
        let c = self.conns.get_mut(&id).expect("handle_message checked the connection");
        let ok = c.keys.as_mut().is_some_and(|k| k.confirm(theirs));
        let h = c.pending.take().expect("the Confirm phase holds the peer's handshake");
        if !ok {
            tracing::warn!(conn = %id, peer = %h.name, "password mismatch: the peer's key confirmation does not match");
            self.password_failed(now, id);
            let r = RefuseReason::PasswordMismatch;
            return self.close(now, id, ConnError::Refused(r), None);
        }
        self.complete_handshake(now, id, *h);
    }

    /// Counts a failed password check; an inbound peer's address must wait before trying again.
    fn password_failed(&mut self, now: Instant, id: ConnId) {
        self.stats.password_mismatches += 1;
        let c = &self.conns[&id];
        if c.outbound {
            return;
        }
        let ip = c.remote_addr.ip();
        if self.auth_blocked.len() >= AUTH_BLOCKED_MAX {
            self.auth_blocked.retain(|_, until| now < *until);
            if self.auth_blocked.len() >= AUTH_BLOCKED_MAX {
                if let Some(oldest) = self.auth_blocked.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                    self.auth_blocked.remove(&oldest);
                }
            }
        }
        self.auth_blocked.insert(ip, now + self.config.password_retry);
    }

    /// The handshake (and, with a password, the key confirmation) is done: settle duplicates
    /// and bring the connection up.
    fn complete_handshake(&mut self, now: Instant, id: ConnId, h: Handshake) {
        let c = self.conns.get_mut(&id).expect("handle_message checked the connection");
        // Given, when the peer was told to dial us, or we were told to dial it (whichever
        // side's dial got there first).
        if !c.outbound
            && (h.flags & FLAG_GIVEN != 0 || self.targets.values().any(|t| !t.discovered && t.peer == Some(h.name)))
        {
            c.given = true;
        }
        // At the limit, a connection one side was told to make displaces one that neither
        // was (the newest): discovery alone must never keep a router from the peers it was
        // given, or split the overlay.
        if !self.by_peer.contains_key(&h.name) && self.by_peer.len() >= self.config.conn_limit {
            let given = self.conns[&id].given;
            let spare = given
                .then(|| {
                    self.by_peer.values().copied().filter(|o| !self.conns[o].given).max_by_key(|o| self.conns[o].up_at)
                })
                .flatten();
            let r = RefuseReason::ConnectionLimit;
            match spare {
                Some(o) => self.close(now, o, ConnError::Refused(r), Some(r)),
                None => return self.close(now, id, ConnError::Refused(r), Some(r)),
            }
        }
        let c = self.conns.get_mut(&id).expect("still open");
        let ip = c.remote_addr.ip();
        c.peer = Some(Remote {
            name: h.name,
            uid: h.uid,
            nickname: h.nickname,
            udp_addr: SocketAddr::new(ip, h.udp_port),
            listen_addr: SocketAddr::new(ip, h.tcp_port),
            session: h.session,
        });
        if let Some(&old) = self.by_peer.get(&h.name) {
            let me = self.config.name;
            let old_conn = &self.conns[&old];
            let old_uid = old_conn.peer.as_ref().expect("registered connections are up").uid;
            if old_uid != h.uid {
                self.close(now, old, ConnError::Replaced, None);
            } else if self.conns[&id].rank(me) < old_conn.rank(me) {
                let r = RefuseReason::Duplicate;
                self.close(now, old, ConnError::Refused(r), Some(r));
            } else {
                let r = RefuseReason::Duplicate;
                return self.close(now, id, ConnError::Refused(r), Some(r));
            }
        }
        let c = self.conns.get_mut(&id).expect("still open");
        c.phase = Phase::Up;
        c.up_at = Some(now);
        // A peer that dialled us may be one we dial too: its target learns whom it reaches.
        let listen = c.peer.as_ref().map(|p| p.listen_addr);
        let target = c.target.or(listen.filter(|a| self.targets.contains_key(a)));
        self.by_peer.insert(h.name, id);
        if let Some(t) = target.and_then(|a| self.targets.get_mut(&a)) {
            t.peer = Some(h.name);
            t.answered = true;
            t.last_error = None;
        }
        self.own_dirty = true;
        self.timers.cancel(Timer::Conn(id, ConnTimer::Handshake));
        self.timers.set(Timer::Conn(id, ConnTimer::TcpHeartbeat), now + self.config.tcp_heartbeat);
        self.timers.set(Timer::Conn(id, ConnTimer::TcpTimeout), now + self.config.tcp_timeout);
        self.timers.set(Timer::Conn(id, ConnTimer::UdpHeartbeat), now);
        let summary = self.topology.summary();
        self.send_gossip(id, &Message::GossipSummary(summary));
        self.send_ipam_full(id);
        tracing::info!(conn = %id, peer = %h.name, "connection up");
        self.push_event(Event::ConnectionUp { conn: id, peer: h.name });
        // Probed before the link is established: on most paths the ceiling is acknowledged
        // first, and the link is advertised with its path MTU in one change.
        self.pmtu_start(now, id);
    }

    pub(crate) fn send_tcp_heartbeat(&mut self, now: Instant, id: ConnId) {
        if !self.conns.contains_key(&id) {
            return;
        }
        self.send_msg(id, &Message::Heartbeat);
        self.timers.set(Timer::Conn(id, ConnTimer::TcpHeartbeat), now + self.config.tcp_heartbeat);
    }

    pub(crate) fn check_tcp_timeout(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(&id) else { return };
        let due = c.last_tcp_rx + self.config.tcp_timeout;
        if due <= now {
            self.close(now, id, ConnError::Timeout, None);
        } else {
            self.timers.set(Timer::Conn(id, ConnTimer::TcpTimeout), due);
        }
    }
}

fn message_name(m: &Message) -> &'static str {
    match m {
        Message::Handshake(_) => "handshake",
        Message::Refuse(_) => "refuse",
        Message::Heartbeat => "heartbeat",
        Message::UdpAck { .. } => "udp ack",
        Message::GossipSummary(_) => "gossip summary",
        Message::GossipDigest(_) => "gossip digest",
        Message::GossipUpdate(_) => "gossip update",
        Message::Confirm(_) => "key confirmation",
        Message::PmtuAck { .. } => "path MTU ack",
        Message::Ipam(_) => "ipam",
    }
}
