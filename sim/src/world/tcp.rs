//! The TCP model: control connections are ordered, reliable byte streams between two router
//! incarnations that take the path's latency, stall while it is down, and are reset when an
//! end restarts.

use router_core::DialFailure;

use super::*;

/// One TCP connection: end 0 dialled, end 1 accepted. Queue `d` carries bytes from end `d`
/// to the other; `None` is a FIN.
pub(crate) struct Tcp {
    pub(super) ends: [(u32, u32, Option<ConnId>); 2],
    /// Per direction, what is on its way and when it arrives (`None`: the close), in order.
    pub(super) queues: [std::collections::VecDeque<(Instant, Option<Vec<u8>>)>; 2],
    pub(super) scheduled: [bool; 2],
    /// The latest arrival scheduled per direction: nothing overtakes it.
    pub(super) last_at: [Instant; 2],
    pub(super) open: [bool; 2],
}

impl World {
    pub(super) fn alloc_tcp(&mut self, t: Tcp) -> u32 {
        match self.free_tcps.pop() {
            Some(id) => {
                self.tcps[id as usize] = Some(t);
                id
            }
            None => {
                self.tcps.push(Some(t));
                (self.tcps.len() - 1) as u32
            }
        }
    }

    pub(super) fn dial(&mut self, h: u32, conn: ConnId, addr: SocketAddr) {
        let inc = self.hosts[h as usize].incarnation;
        let now = self.now;
        let Some(dst) = host_of(addr).filter(|&d| d < self.net.len() && addr.port() == PORT) else {
            return self.push(now + CONNECT_TIMEOUT, Ev::DialFail { host: h, inc, conn });
        };
        let t = Tcp {
            ends: [(h, inc, Some(conn)), (dst, 0, None)],
            queues: Default::default(),
            scheduled: [false; 2],
            last_at: [now; 2],
            open: [true, false],
        };
        let id = self.alloc_tcp(t);
        self.tcp_of.insert((h, inc, conn), (id, 0));
        if self.net.path_up(h, dst) && self.net.path_up(dst, h) {
            let at = now + self.net.latency(h, dst);
            self.push(at, Ev::Syn { tcp: id });
        } else {
            self.push(now + CONNECT_TIMEOUT, Ev::DialFail { host: h, inc, conn });
            self.free_tcp(id);
        }
    }

    pub(super) fn free_tcp(&mut self, id: u32) {
        if let Some(t) = self.tcps[id as usize].take() {
            for (h, inc, c) in t.ends {
                if let Some(c) = c {
                    self.tcp_of.remove(&(h, inc, c));
                }
            }
            self.free_tcps.push(id);
            self.stalled.remove(&id);
        }
    }

    pub(super) fn on_dial_fail(&mut self, h: u32, inc: u32, conn: ConnId) {
        let now = self.now;
        let host = &mut self.hosts[h as usize];
        if host.incarnation != inc {
            return;
        }
        let Some(r) = host.router.as_mut() else { return };
        // Every failed dial here is one nobody answered.
        r.handle_conn_event(now, conn, ConnEvent::DialFailed(DialFailure::TimedOut));
        self.trace.record(now.as_micros(), 4, h, u64::from(conn.0), || {
            format!("{{\"t\":{},\"ev\":\"dial-failed\",\"host\":{h}}}", now.as_micros())
        });
        self.drain(h);
    }

    pub(super) fn on_syn(&mut self, id: u32) {
        let now = self.now;
        let Some(t) = self.tcps[id as usize].as_ref() else { return };
        let (a, a_inc, a_conn) = t.ends[0];
        let b = t.ends[1].0;
        let a_conn = a_conn.expect("dialler has a conn");
        let path = self.net.path_up(b, a);
        let host = &mut self.hosts[b as usize];
        let Some(r) = host.router.as_mut() else {
            // Nobody listening: the SYN goes unanswered (crashed) and the dial times out.
            self.free_tcp(id);
            return self.push(now + CONNECT_TIMEOUT, Ev::DialFail { host: a, inc: a_inc, conn: a_conn });
        };
        let remote = SocketAddr::new(IpAddr::V4(host_ip(a)), 30_000 + (id % 30_000) as u16);
        let conn = r.accept(now, remote);
        let inc = host.incarnation;
        let t = self.tcps[id as usize].as_mut().expect("checked");
        t.ends[1] = (b, inc, Some(conn));
        t.open[1] = true;
        self.tcp_of.insert((b, inc, conn), (id, 1));
        self.trace.record(now.as_micros(), 5, b, u64::from(a), || {
            format!("{{\"t\":{},\"ev\":\"accept\",\"host\":{b},\"from\":{a}}}", now.as_micros())
        });
        if path {
            let at = now + self.net.latency(b, a);
            self.push(at, Ev::SynAck { tcp: id });
        }
        self.drain(b);
    }

    pub(super) fn on_synack(&mut self, id: u32) {
        let now = self.now;
        let Some(t) = self.tcps[id as usize].as_ref() else { return };
        let (a, inc, conn) = t.ends[0];
        if !t.open[0] || self.hosts[a as usize].incarnation != inc {
            return;
        }
        let Some(r) = self.hosts[a as usize].router.as_mut() else { return };
        r.handle_conn_event(now, conn.expect("dialler"), ConnEvent::Connected);
        self.trace.record(now.as_micros(), 6, a, 0, || {
            format!("{{\"t\":{},\"ev\":\"connected\",\"host\":{a}}}", now.as_micros())
        });
        self.drain(a);
    }

    pub(super) fn send_stream(&mut self, h: u32, conn: ConnId, bytes: &[u8]) {
        let inc = self.hosts[h as usize].incarnation;
        let Some(&(id, dir)) = self.tcp_of.get(&(h, inc, conn)) else { return };
        self.queue_seg(id, dir, Some(bytes.to_vec()));
    }

    /// Sends on a stream: segments are pipelined, each arriving one latency after it was
    /// sent and never before the one ahead of it.
    pub(super) fn queue_seg(&mut self, id: u32, dir: u8, seg: Option<Vec<u8>>) {
        let Some(t) = self.tcps[id as usize].as_mut() else { return };
        let (from, to) = (t.ends[dir as usize].0, t.ends[1 - dir as usize].0);
        let due = self.now + self.net.latency(from, to);
        t.queues[dir as usize].push_back((due, seg));
        self.schedule_seg(id, dir);
    }

    pub(super) fn close_stream(&mut self, h: u32, conn: ConnId) {
        let inc = self.hosts[h as usize].incarnation;
        let Some((id, dir)) = self.tcp_of.remove(&(h, inc, conn)) else { return };
        let t = self.tcps[id as usize].as_mut().expect("mapped");
        t.open[dir as usize] = false;
        t.ends[dir as usize].2 = None;
        if t.open[1 - dir as usize] {
            self.queue_seg(id, dir, None);
        } else {
            self.free_tcp(id);
        }
    }

    pub(super) fn schedule_seg(&mut self, id: u32, dir: u8) {
        let Some(t) = self.tcps[id as usize].as_mut() else { return };
        let d = dir as usize;
        let Some(&(due, _)) = t.queues[d].front() else { return };
        if t.scheduled[d] {
            return;
        }
        let (from, to) = (t.ends[d].0, t.ends[1 - d].0);
        if !self.net.path_up(from, to) {
            self.stalled.insert(id);
            return;
        }
        let at = due.max(t.last_at[d]).max(self.now);
        t.last_at[d] = at;
        t.scheduled[d] = true;
        self.push(at, Ev::Seg { tcp: id, dir });
    }

    pub(super) fn on_seg(&mut self, id: u32, dir: u8) {
        let now = self.now;
        let Some(t) = self.tcps[id as usize].as_mut() else { return };
        let d = dir as usize;
        t.scheduled[d] = false;
        let (from, to) = (t.ends[d].0, t.ends[1 - d].0);
        if !self.net.path_up(from, to) {
            self.stalled.insert(id);
            return;
        }
        let (to_host, to_inc, to_conn) = t.ends[1 - d];
        let Some((_, seg)) = t.queues[d].pop_front() else { return };
        let alive = t.open[1 - d] && self.hosts[to_host as usize].incarnation == to_inc;
        let Some(conn) = to_conn.filter(|_| alive) else {
            if seg.is_none() && !t.open[1 - d] {
                self.free_tcp(id);
            } else {
                self.schedule_seg(id, dir);
            }
            return;
        };
        let Some(r) = self.hosts[to_host as usize].router.as_mut() else {
            // Crashed: the bytes are lost with the host.
            return;
        };
        match &seg {
            Some(bytes) => {
                r.handle_stream(now, conn, bytes);
                self.trace.record(now.as_micros(), 7, to_host, hash_bytes(bytes), || {
                    format!(
                        "{{\"t\":{},\"ev\":\"tcp\",\"from\":{from},\"to\":{to},\"len\":{}}}",
                        now.as_micros(),
                        bytes.len()
                    )
                });
            }
            None => {
                r.handle_conn_event(now, conn, ConnEvent::Closed);
                self.trace.record(now.as_micros(), 8, to_host, 0, || {
                    format!("{{\"t\":{},\"ev\":\"tcp-close\",\"from\":{from},\"to\":{to}}}", now.as_micros())
                });
                let t = self.tcps[id as usize].as_mut().expect("present");
                t.open[1 - d] = false;
                self.tcp_of.remove(&(to_host, to_inc, conn));
                t.ends[1 - d].2 = None;
                if !t.open[d] {
                    self.free_tcp(id);
                }
            }
        }
        self.schedule_seg(id, dir);
        self.drain(to_host);
    }

    /// Retries stalled connections after a fault was lifted.
    pub(super) fn unstall(&mut self) {
        let ids: Vec<u32> = std::mem::take(&mut self.stalled).into_iter().collect();
        for id in ids {
            // What waited is sent again now and takes a latency from here.
            if let Some(t) = self.tcps[id as usize].as_mut() {
                for d in 0..2 {
                    let (from, to) = (t.ends[d].0, t.ends[1 - d].0);
                    t.last_at[d] = t.last_at[d].max(self.now + self.net.latency(from, to));
                }
            }
            for dir in 0..2 {
                self.schedule_seg(id, dir);
            }
        }
    }
}
