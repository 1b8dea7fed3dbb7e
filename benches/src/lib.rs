//! Fixtures shared by the benchmarks and the allocation test.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use router_core::topology::View;
use router_core::wire::gossip::{ConnInfo, PeerEntry};
use router_core::{
    Config, ConnEvent, Destination, Duration, Event, Instant, PeerName, PeerUid, Router, TRANSMIT_BUF_MIN,
};

/// A random view of `n` peers where each peer links to about `degree` others, both ends
/// advertising every link as established. Deterministic for a seed.
pub fn random_view(n: u64, degree: u64, seed: u64) -> View {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut adj: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); n as usize];
    for i in 1..n {
        let j = next() % i; // a spanning tree keeps it connected
        adj[i as usize].insert(j);
        adj[j as usize].insert(i);
    }
    for _ in 0..(n * degree / 2).saturating_sub(n - 1) {
        let (a, b) = (next() % n, next() % n);
        if a != b {
            adj[a as usize].insert(b);
            adj[b as usize].insert(a);
        }
    }
    adj.into_iter()
        .enumerate()
        .map(|(i, ns)| {
            let name = PeerName::from_u64(i as u64 + 1);
            let conns = ns
                .into_iter()
                .map(|j| ConnInfo {
                    peer: PeerName::from_u64(j + 1),
                    established: true,
                    outbound: (i as u64) < j,
                    addr: Some(SocketAddr::from(([10, 0, (j >> 8) as u8, j as u8], 6783))),
                    mtu: None,
                })
                .collect();
            let e = PeerEntry { name, uid: PeerUid(i as u64), version: 1, nickname: format!("host-{i}"), conns };
            Arc::new(e)
        })
        .collect()
}

/// Two routers, A (index 0) and B (index 1), connected and established, wired in memory.
pub struct Pair {
    /// The routers.
    pub routers: [Router; 2],
    /// Virtual time.
    pub now: Instant,
    buf: Vec<u8>,
}

/// A's and B's addresses.
pub const ADDRS: [&str; 2] = ["10.0.0.1:6783", "10.0.0.2:6783"];

impl Pair {
    /// Connects A to B and runs until the link is established both ways.
    pub fn established() -> Pair {
        Pair::established_with(None)
    }

    /// As [`Pair::established`], both routers with `password` (encrypted) when given.
    pub fn established_with(password: Option<&str>) -> Pair {
        let routers = [0u64, 1].map(|i| {
            let mut c = Config::new(PeerName::from_u64(i + 1));
            c.seed = i;
            c.discovery = false;
            c.password = password.map(|p| router_core::Password::new(p).expect("non-empty"));
            Router::seeded(Instant::ZERO, c).expect("a valid configuration")
        });
        let mut p = Pair { routers, now: Instant::ZERO, buf: vec![0; TRANSMIT_BUF_MIN] };
        p.routers[0].connect(p.now, ADDRS[1].parse().unwrap()).unwrap();
        for _ in 0..200 {
            p.now += Duration::from_millis(5);
            for i in 0..2 {
                let now = p.now;
                p.routers[i].handle_timeout(now);
            }
            p.shuttle();
        }
        p
    }

    /// Moves every output of each router to the other (one accepted connection each way).
    pub fn shuttle(&mut self) {
        for _ in 0..10 {
            for (i, addr) in ADDRS.iter().enumerate() {
                let j = 1 - i;
                let now = self.now;
                let from: SocketAddr = addr.parse().unwrap();
                while let Some(t) = self.routers[i].poll_transmit(&mut self.buf) {
                    let bytes = self.buf[..t.len].to_vec();
                    match t.dest {
                        Destination::Udp(_) => self.routers[j].handle_datagram(now, from, &bytes),
                        Destination::Conn(_) => {
                            let c = router_core::ConnId(1);
                            self.routers[j].handle_stream(now, c, &bytes);
                        }
                        Destination::Bridge => {}
                    }
                }
                while let Some(e) = self.routers[i].poll_event() {
                    if let Event::Dial { conn, .. } = e {
                        let accepted = self.routers[j].accept(now, from);
                        assert_eq!(accepted, router_core::ConnId(1));
                        self.routers[i].handle_conn_event(now, conn, ConnEvent::Connected);
                    }
                }
            }
        }
    }
}

/// An Ethernet frame of `len` bytes from `src` to `dst`.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}
