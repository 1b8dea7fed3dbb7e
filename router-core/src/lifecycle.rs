//! Connection lifecycle: dialling, accepting, closing, reconnecting with backoff, discovery.

use std::net::SocketAddr;

use crate::conn::{Conn, ConnError, Phase};
use crate::crypto::Pake;
use crate::discovery::{DISCOVERED_TRIES, DISCOVERY_REST_BACKOFFS};
use crate::peer::ConnId;
use crate::router::{CommandError, ConnEvent, Event, Router};
use crate::time::Instant;
use crate::timer::{ConnTimer, Timer};
use crate::wire::control::{Handshake, Message, RefuseReason, FLAG_GIVEN, FRAME_HEADER_LEN};
use crate::wire::preamble::Preamble;

const ATTEMPTS_MAX: u32 = 16;

/// Connections accepted beyond the limit while their handshakes decide which stay.
pub(crate) fn handshake_slack(limit: usize) -> usize {
    (limit / 8).max(2)
}

const RECENT_FAILURES_MAX: usize = 16;

impl Router {
    /// Keeps a connection to `addr`, redialling with backoff whenever it drops.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) -> Result<(), CommandError> {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(CommandError::BadAddress(addr));
        }
        let t = self.targets.entry(addr).or_default();
        t.discovered = false;
        t.is_self = false;
        t.attempts = 0;
        if t.conn.is_none() {
            self.timers.cancel(Timer::Redial(addr));
            self.dial(now, addr);
        }
        self.commit(now);
        Ok(())
    }

    /// Stops reconnecting to `addr`. A connection that is up stays up until it drops.
    pub fn forget(&mut self, now: Instant, addr: SocketAddr) -> Result<(), CommandError> {
        let t = self.targets.remove(&addr).ok_or(CommandError::UnknownTarget(addr))?;
        self.timers.cancel(Timer::Redial(addr));
        match t.peer {
            Some(p) => self.discovery.peer_free(p),
            None => self.discovery.addr_free(addr),
        }
        if let Some(id) = t.conn {
            if let Some(c) = self.conns.get_mut(&id) {
                c.target = None;
                if c.phase != Phase::Up {
                    self.close(now, id, ConnError::Forgotten, None);
                }
            }
        }
        self.commit(now);
        Ok(())
    }

    /// The addresses this router keeps connected to (given by `connect`, not discovered).
    pub fn targets(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.targets.iter().filter(|(_, t)| !t.discovered).map(|(a, _)| *a)
    }

    /// Takes a connection the driver accepted from `remote`. Over the connection limit the
    /// core refuses it on the wire and asks the driver to close it.
    pub fn accept(&mut self, now: Instant, remote: SocketAddr) -> ConnId {
        let id = self.alloc_conn_id();
        let session = rand_core::RngCore::next_u64(&mut self.rng);
        // Room for a few handshakes beyond the limit: the limit holds for connections that
        // are up, and one that comes up over it must have been given (see
        // `complete_handshake`).
        let full = self.conns.len() >= self.config.conn_limit + handshake_slack(self.config.conn_limit);
        let blocked = self.auth_blocked.get(&remote.ip()).is_some_and(|&until| now < until);
        let mut c = Conn::new(now, false, remote, session);
        c.pmtu = self.pmtu_initial();
        self.conns.insert(id, c);
        self.open_stream(now, id);
        if full {
            self.close(now, id, ConnError::Refused(RefuseReason::ConnectionLimit), Some(RefuseReason::ConnectionLimit));
        } else if blocked {
            let r = RefuseReason::TooManyAttempts;
            self.close(now, id, ConnError::Refused(r), Some(r));
        }
        self.commit(now);
        id
    }

    /// Reports what happened to a TCP connection.
    pub fn handle_conn_event(&mut self, now: Instant, id: ConnId, ev: ConnEvent) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        match ev {
            ConnEvent::Connected if c.phase == Phase::Dialing => {
                c.phase = Phase::Preamble;
                c.last_tcp_rx = now;
                self.open_stream(now, id);
            }
            ConnEvent::Connected => {}
            ConnEvent::Closed => {
                self.out.forget_conn(id);
                self.drop_conn(now, id, ConnError::Closed, false);
            }
            ConnEvent::DialFailed(f) => {
                self.out.forget_conn(id);
                self.drop_conn(now, id, ConnError::DialFailed(f), false);
            }
        }
        self.commit(now);
    }

    /// Sends our preamble and handshake (with a fresh PAKE message when we have a password);
    /// arms the handshake deadline.
    fn open_stream(&mut self, now: Instant, id: ConnId) {
        let c = self.conns.get_mut(&id).expect("caller inserted the connection");
        let session = c.session;
        let pake = self.config.password.as_ref().map(|pw| {
            let (run, msg) = Pake::start(pw, c.outbound, &mut *self.random);
            c.pake = Some(run);
            msg
        });
        self.out.stream(id, &Preamble::OURS.emit());
        let hs = Message::Handshake(Handshake {
            name: self.config.name,
            uid: self.uid,
            nickname: self.config.nickname.clone(),
            udp_port: self.config.udp_port,
            tcp_port: self.config.tcp_port,
            session,
            flags: if c.outbound && c.given { FLAG_GIVEN } else { 0 },
            pake,
        });
        let n = self.out.message(id, &hs, None);
        if c.pake.is_some() {
            c.hs_sent = self.out.last_bytes(n)[FRAME_HEADER_LEN..].to_vec();
        }
        self.timers.set(Timer::Conn(id, ConnTimer::Handshake), now + self.config.handshake_timeout);
    }

    pub(crate) fn dial(&mut self, now: Instant, addr: SocketAddr) {
        // Dials to discovered peers leave a quarter of the connections to the peers we were
        // given and to those that dial us: on a sparse underlay most discovered addresses do
        // not answer, and their pending dials must not crowd out the ones that do.
        // A given target is dialled even at the limit: once up, it displaces a connection
        // nobody was told to make (see `complete_handshake`).
        let limit = match self.targets.get(&addr) {
            Some(t) if t.discovered => self.config.conn_limit - self.config.conn_limit / 4,
            _ => self.config.conn_limit + handshake_slack(self.config.conn_limit),
        };
        if self.conns.len() >= limit {
            if let Some(t) = self.targets.get_mut(&addr) {
                t.last_error = Some("connection limit reached; will retry".into());
            }
            self.schedule_redial(now, addr);
            return;
        }
        let id = self.alloc_conn_id();
        let session = rand_core::RngCore::next_u64(&mut self.rng);
        let mut c = Conn::new(now, true, addr, session);
        c.pmtu = self.pmtu_initial();
        c.target = Some(addr);
        c.given = self.targets.get(&addr).is_some_and(|t| !t.discovered);
        self.conns.insert(id, c);
        if let Some(t) = self.targets.get_mut(&addr) {
            t.conn = Some(id);
        }
        self.timers.set(Timer::Conn(id, ConnTimer::Handshake), now + self.config.handshake_timeout);
        self.stats.dials += 1;
        self.push_event(Event::Dial { conn: id, addr });
    }

    pub(crate) fn schedule_redial(&mut self, now: Instant, addr: SocketAddr) {
        let Some(t) = self.targets.get(&addr) else { return };
        if t.is_self || t.conn.is_some() {
            return;
        }
        let exp = t.attempts.min(ATTEMPTS_MAX);
        let base = self.config.backoff_min.saturating_mul(1u32 << exp.min(20)).min(self.config.backoff_max);
        let delay = self.jittered(base);
        self.timers.set(Timer::Redial(addr), now + delay);
    }

    pub(crate) fn redial(&mut self, now: Instant, addr: SocketAddr) {
        let Some(t) = self.targets.get(&addr) else { return };
        if t.conn.is_some() || t.is_self {
            return;
        }
        // Already connected to that peer through another connection: wait until it drops.
        if t.peer.is_some_and(|p| self.by_peer.contains_key(&p)) {
            return;
        }
        self.dial(now, addr);
    }

    /// Refuses (when `refusal` is given, on the wire) and closes a connection.
    pub(crate) fn close(&mut self, now: Instant, id: ConnId, why: ConnError, refusal: Option<RefuseReason>) {
        if let Some(r) = refusal {
            self.send_msg(id, &Message::Refuse(r));
        }
        self.drop_conn(now, id, why, true);
    }

    /// Forgets a connection and everything that hangs off it.
    pub(crate) fn drop_conn(&mut self, now: Instant, id: ConnId, why: ConnError, tell_driver: bool) {
        let Some(c) = self.conns.remove(&id) else { return };
        self.timers.cancel_conn(id);
        let peer = c.peer.as_ref().map(|p| p.name);
        if let Some(addr) = c.udp_bound {
            if self.by_udp.get(&addr) == Some(&id) {
                self.by_udp.remove(&addr);
            }
        }
        if let Some(p) = peer {
            if self.by_peer.get(&p) == Some(&id) {
                self.by_peer.remove(&p);
                self.own_dirty = true;
                self.discovery.peer_free(p);
                if c.established() {
                    self.push_event(Event::LinkLost { peer: p, reason: crate::conn::LinkReason::HeartbeatTimeout });
                }
                // Targets that waited because this peer was connected another way may dial now.
                let waiting: Vec<SocketAddr> = self
                    .targets
                    .iter()
                    .filter(|(_, t)| t.peer == Some(p) && t.conn.is_none())
                    .map(|(a, _)| *a)
                    .collect();
                for a in waiting {
                    self.schedule_redial(now, a);
                }
            }
        }
        if let Some(addr) = c.target {
            if let Some(t) = self.targets.get_mut(&addr) {
                if t.conn == Some(id) {
                    t.conn = None;
                }
                if peer.is_some() {
                    t.peer = peer;
                }
                let lived = c.up_at.map(|u| now - u);
                if lived.is_some_and(|l| l >= self.config.stable_after) {
                    t.attempts = 0;
                } else {
                    t.attempts = (t.attempts + 1).min(ATTEMPTS_MAX);
                }
                match why {
                    ConnError::Refused(RefuseReason::ConnectToSelf)
                    | ConnError::RefusedByPeer(RefuseReason::ConnectToSelf) => t.is_self = true,
                    _ => {}
                }
                t.last_error = Some(why.to_string());
                // Silence, not a refusal: a peer that refuses (a duplicate, its connection
                // limit) is there, and is tried again as any target is.
                let silent = matches!(why, ConnError::DialFailed(_) | ConnError::Closed | ConnError::HandshakeTimeout);
                // A discovered address that never answered rests after its first silent dial
                // (a dial already retries inside its connect timeout); one that answered
                // before gets DISCOVERED_TRIES.
                let tries = if t.answered { DISCOVERED_TRIES } else { 1 };
                if t.discovered && silent && t.attempts >= tries {
                    // It does not answer us: its place goes to another discovered peer, and
                    // it is tried again after a long rest, or as soon as it becomes reachable
                    // after having been unreachable (a partition healed).
                    self.timers.cancel(Timer::Redial(addr));
                    let (until, peer) = (now + self.config.backoff_max * DISCOVERY_REST_BACKOFFS, t.peer);
                    self.targets.remove(&addr);
                    self.discovery.rest(addr, until, peer);
                    self.stats.discovered_rested += 1;
                } else {
                    self.schedule_redial(now, addr);
                }
            }
        }
        if !matches!(
            why,
            ConnError::Refused(RefuseReason::Duplicate) | ConnError::RefusedByPeer(RefuseReason::Duplicate)
        ) {
            if self.recent_failures.len() == RECENT_FAILURES_MAX {
                self.recent_failures.pop_front();
            }
            self.recent_failures.push_back((now, c.remote_addr, peer, why.clone()));
        }
        tracing::debug!(conn = %id, remote = %c.remote_addr, ?peer, reason = %why, "connection closed");
        if tell_driver {
            self.push_event(Event::Close { conn: id });
        }
        self.push_event(Event::ConnectionDown { conn: id, remote: c.remote_addr, peer, reason: why });
    }
}
