//! A tiny deterministic network for tests: routers wired by handing each one's transmits to
//! the others, no sockets. Every delivery takes a fixed latency; cut links drop UDP and reset
//! TCP; everything runs in virtual time.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use router_core::{
    Config, ConnEvent, ConnId, Destination, Duration, Event, Instant, PeerName, Router, TRANSMIT_BUF_MIN,
};

pub const PORT: u16 = 6783;
pub const LATENCY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
enum Delivery {
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Stream {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Conn {
        conn: ConnId,
        ev: ConnEvent,
    },
    /// A dial from `(host, conn)` reaches this host.
    Accept {
        from_host: usize,
        from_conn: ConnId,
    },
}

pub struct Host {
    pub router: Router,
    pub bridge: Vec<Vec<u8>>,
    pub events: Vec<Event>,
    pub up: bool,
    /// Times the router was woken for a deadline.
    pub wakes: u64,
}

/// Bytes seen on the wire (when tapping).
#[derive(Debug, Clone)]
pub struct Tapped {
    pub from: usize,
    pub to: usize,
    pub udp: bool,
    pub bytes: Vec<u8>,
}

pub struct Net {
    pub hosts: Vec<Host>,
    /// Record every datagram and stream write.
    pub tapping: bool,
    pub tap: Vec<Tapped>,
    /// Hold UDP sent from `.0` to `.1` here instead of delivering it.
    pub hold: Option<(usize, usize)>,
    pub held: Vec<Vec<u8>>,
    pub now: Instant,
    seq: u64,
    queue: BTreeMap<(Instant, u64), (usize, Delivery)>,
    /// (host, conn) -> (host, conn) of the other end.
    pairs: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    pub cut: BTreeSet<(usize, usize)>,
    pub udp_blocked: BTreeSet<(usize, usize)>,
    /// The IP MTU of an underlay link (both ways): larger datagrams are dropped silently.
    pub link_mtu: BTreeMap<(usize, usize), usize>,
    ephemeral: u16,
    buf: Vec<u8>,
    restarts: u64,
}

pub fn ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, u8::try_from(i + 1).unwrap()))
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(ip(i), PORT)
}

pub fn name(i: usize) -> PeerName {
    PeerName::from_u64(0x0200_0000_0000 + i as u64 + 1)
}

fn host_of(a: SocketAddr) -> usize {
    match a.ip() {
        IpAddr::V4(v4) => usize::from(v4.octets()[3]) - 1,
        IpAddr::V6(_) => unreachable!(),
    }
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

pub fn config(i: usize, seed: u64) -> Config {
    let mut c = Config::new(name(i));
    c.nickname = format!("h{i}");
    c.seed = seed;
    c.discovery = false;
    c.backoff_min = Duration::from_millis(200);
    c.backoff_max = Duration::from_secs(2);
    c.udp_timeout = Duration::from_secs(1);
    c.anti_entropy = Duration::from_secs(5);
    c
}

impl Net {
    pub fn new(n: usize) -> Net {
        Net::with_config(n, |i| config(i, i as u64 + 1))
    }

    pub fn with_config(n: usize, cfg: impl Fn(usize) -> Config) -> Net {
        let hosts = (0..n)
            .map(|i| Host {
                router: Router::seeded(Instant::ZERO, cfg(i)).expect("a valid configuration"),
                bridge: Vec::new(),
                events: Vec::new(),
                up: true,
                wakes: 0,
            })
            .collect();
        let mut net = Net {
            hosts,
            tapping: false,
            tap: Vec::new(),
            hold: None,
            held: Vec::new(),
            now: Instant::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            pairs: BTreeMap::new(),
            cut: BTreeSet::new(),
            udp_blocked: BTreeSet::new(),
            link_mtu: BTreeMap::new(),
            ephemeral: 40000,
            buf: vec![0; TRANSMIT_BUF_MIN],
            restarts: 0,
        };
        for i in 0..n {
            net.drain(i);
        }
        net
    }

    fn push(&mut self, at: Instant, host: usize, d: Delivery) {
        self.seq += 1;
        self.queue.insert((at, self.seq), (host, d));
    }

    pub fn connect(&mut self, a: usize, b: usize) {
        let now = self.now;
        self.hosts[a].router.connect(now, addr(b)).unwrap();
        self.drain(a);
    }

    /// Drains every output of host `i` into the network.
    pub fn drain(&mut self, i: usize) {
        let at = self.now + LATENCY;
        while let Some(t) = self.hosts[i].router.poll_transmit(&mut self.buf) {
            let bytes = self.buf[..t.len].to_vec();
            match t.dest {
                Destination::Bridge => self.hosts[i].bridge.push(bytes),
                Destination::Udp(to) => {
                    let j = host_of(to);
                    if self.tapping {
                        self.tap.push(Tapped { from: i, to: j, udp: true, bytes: bytes.clone() });
                    }
                    if self.hold == Some((i, j)) {
                        self.held.push(bytes);
                    } else if j < self.hosts.len()
                        && !self.cut.contains(&key(i, j))
                        && !self.udp_blocked.contains(&key(i, j))
                        && self.link_mtu.get(&key(i, j)).is_none_or(|&m| bytes.len() + 28 <= m)
                    {
                        self.push(at, j, Delivery::Datagram { from: addr(i), bytes });
                    }
                }
                Destination::Conn(conn) => {
                    if let Some(&(j, cj)) = self.pairs.get(&(i, conn)) {
                        if self.tapping {
                            self.tap.push(Tapped { from: i, to: j, udp: false, bytes: bytes.clone() });
                        }
                        self.push(at, j, Delivery::Stream { conn: cj, bytes });
                    }
                }
            }
        }
        while let Some(e) = self.hosts[i].router.poll_event() {
            match &e {
                Event::Dial { conn, addr: to } => {
                    let j = host_of(*to);
                    if j < self.hosts.len() && self.hosts[j].up && !self.cut.contains(&key(i, j)) {
                        self.push(at, j, Delivery::Accept { from_host: i, from_conn: *conn });
                    } else {
                        self.push(at + LATENCY, i, Delivery::Conn { conn: *conn, ev: ConnEvent::Closed });
                    }
                }
                Event::Close { conn } => {
                    if let Some((j, cj)) = self.pairs.remove(&(i, *conn)) {
                        self.pairs.remove(&(j, cj));
                        self.push(at, j, Delivery::Conn { conn: cj, ev: ConnEvent::Closed });
                    }
                }
                _ => {}
            }
            self.hosts[i].events.push(e);
        }
    }

    fn deliver(&mut self, i: usize, d: Delivery) {
        let now = self.now;
        if !self.hosts[i].up {
            return;
        }
        let r = &mut self.hosts[i].router;
        match d {
            Delivery::Datagram { from, bytes } => r.handle_datagram(now, from, &bytes),
            Delivery::Stream { conn, bytes } => r.handle_stream(now, conn, &bytes),
            Delivery::Conn { conn, ev } => r.handle_conn_event(now, conn, ev),
            Delivery::Accept { from_host, from_conn } => {
                self.ephemeral += 1;
                let remote = SocketAddr::new(ip(from_host), self.ephemeral);
                let mine = r.accept(now, remote);
                self.pairs.insert((i, mine), (from_host, from_conn));
                self.pairs.insert((from_host, from_conn), (i, mine));
                self.push(now + LATENCY, from_host, Delivery::Conn { conn: from_conn, ev: ConnEvent::Connected });
            }
        }
        self.drain(i);
    }

    /// Runs until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_delivery = self.queue.keys().next().map(|k| k.0);
            let next_timer = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| h.up)
                .filter_map(|(i, h)| h.router.poll_timeout().map(|t| (t, i)))
                .min();
            let delivery_first = match (next_delivery, next_timer) {
                (Some(d), Some((t, _))) => d <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if delivery_first {
                let (&k, _) = self.queue.iter().next().unwrap();
                if k.0 > end {
                    break;
                }
                let (host, d) = self.queue.remove(&k).unwrap();
                self.now = self.now.max(k.0);
                self.deliver(host, d);
            } else {
                let (t, i) = next_timer.unwrap();
                if t > end {
                    break;
                }
                self.now = self.now.max(t);
                let now = self.now;
                self.hosts[i].router.handle_timeout(now);
                self.hosts[i].wakes += 1;
                self.drain(i);
            }
        }
        self.now = end;
    }

    /// Sets the IP MTU of the underlay link between `a` and `b`.
    pub fn set_mtu(&mut self, a: usize, b: usize, mtu: usize) {
        self.link_mtu.insert(key(a, b), mtu);
    }

    /// Cuts the underlay between `a` and `b`: UDP is dropped and TCP connections reset.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert(key(a, b));
        let doomed: Vec<_> =
            self.pairs.iter().filter(|((h, _), (j, _))| key(*h, *j) == key(a, b)).map(|(k, _)| *k).collect();
        for (h, c) in doomed {
            self.pairs.remove(&(h, c));
            let at = self.now + LATENCY;
            self.push(at, h, Delivery::Conn { conn: c, ev: ConnEvent::Closed });
        }
    }

    pub fn heal(&mut self, a: usize, b: usize) {
        self.cut.remove(&key(a, b));
    }

    /// Restarts host `i`: same name, new incarnation, state lost; peers see its TCP reset.
    pub fn restart(&mut self, i: usize, cfg: Config) {
        let doomed: Vec<_> = self.pairs.iter().filter(|((h, _), _)| *h == i).map(|(k, v)| (*k, *v)).collect();
        for ((h, c), (j, cj)) in doomed {
            self.pairs.remove(&(h, c));
            self.pairs.remove(&(j, cj));
            let at = self.now + LATENCY;
            self.push(at, j, Delivery::Conn { conn: cj, ev: ConnEvent::Closed });
        }
        self.queue.retain(|_, (h, _)| *h != i);
        self.restarts += 1;
        self.hosts[i] = Host {
            router: Router::seeded(self.now, cfg).expect("a valid configuration"),
            bridge: Vec::new(),
            events: Vec::new(),
            up: true,
            wakes: 0,
        };
        self.drain(i);
    }

    /// Delivers `bytes` to host `j` now, as a datagram from host `from`.
    pub fn inject(&mut self, j: usize, from: usize, bytes: &[u8]) {
        self.deliver(j, Delivery::Datagram { from: addr(from), bytes: bytes.to_vec() });
    }

    /// A frame captured on host `i`'s bridge.
    pub fn capture(&mut self, i: usize, frame: &[u8]) {
        let now = self.now;
        self.hosts[i].router.handle_frame(now, frame);
        self.drain(i);
    }

    pub fn established(&mut self, i: usize, peer: usize) -> bool {
        let now = self.now;
        let st = self.hosts[i].router.status(now);
        st.connections
            .iter()
            .any(|c| c.peer == Some(name(peer)) && c.state == router_core::status::ConnState::Established)
    }
}

/// An Ethernet frame from `src` to `dst` with a payload.
pub fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

pub fn mac(host: usize, n: u8) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, u8::try_from(host).unwrap(), n]
}

pub const BROADCAST: [u8; 6] = [0xff; 6];
