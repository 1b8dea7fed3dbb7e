#![no_main]
//! Captured frames of any length and content, to a peer behind a narrow path: the router
//! never panics, and every frame is sent, answered with an ICMP error, fragmented, or
//! counted as dropped.
use libfuzzer_sys::fuzz_target;
use router_core::{
    Config, ConnEvent, Destination, Duration, Event, Instant, PeerName, Router, TRANSMIT_BUF_MIN,
};
use std::net::SocketAddr;

const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];

struct Pair {
    r: [Router; 2],
    addr: [SocketAddr; 2],
    conn: [Option<router_core::ConnId>; 2],
    /// Largest datagram the A-B link carries.
    narrow: usize,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    fn new(narrow: usize) -> Pair {
        let cfg = |n: u64| {
            let mut c = Config::new(PeerName::from_u64(n));
            c.seed = n;
            c.discovery = false;
            c
        };
        Pair {
            r: [Router::new(Instant::ZERO, cfg(1)).unwrap(), Router::new(Instant::ZERO, cfg(2)).unwrap()],
            addr: ["10.0.0.1:6783".parse().unwrap(), "10.0.0.2:6783".parse().unwrap()],
            conn: [None, None],
            narrow,
            now: Instant::ZERO,
            buf: vec![0; TRANSMIT_BUF_MIN],
        }
    }

    /// Carries out every output of router `i`, delivering to the other at once.
    fn drain(&mut self, i: usize) {
        let j = 1 - i;
        let mut work = true;
        while work {
            work = false;
            while let Some(t) = self.r[i].poll_transmit(&mut self.buf) {
                work = true;
                let bytes = self.buf[..t.len].to_vec();
                match t.dest {
                    Destination::Udp(_) if bytes.len() <= self.narrow => {
                        self.r[j].handle_datagram(self.now, self.addr[i], &bytes)
                    }
                    Destination::Conn(_) => {
                        if let Some(c) = self.conn[j] {
                            self.r[j].handle_stream(self.now, c, &bytes);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(e) = self.r[i].poll_event() {
                if let Event::Dial { conn, .. } = e {
                    work = true;
                    self.conn[i] = Some(conn);
                    self.conn[j] = Some(self.r[j].accept(self.now, "10.0.0.1:40000".parse().unwrap()));
                    self.r[i].handle_conn_event(self.now, conn, ConnEvent::Connected);
                }
            }
            if work {
                self.drain(j);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + Duration::from_millis(5);
            for i in 0..2 {
                if self.r[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.r[i].handle_timeout(self.now);
                }
                self.drain(i);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, data)) = data.split_first() else { return };
    let mut p = Pair::new(548 + usize::from(n) * 4);
    p.r[0].connect(Instant::ZERO, p.addr[1]).unwrap();
    p.drain(0);
    p.run_for(Duration::from_secs(3));
    // B's container speaks: A learns where its MAC lives.
    let mut hello = [0u8; 60];
    hello[..6].copy_from_slice(&[0xff; 6]);
    hello[6..12].copy_from_slice(&MAC_B);
    hello[12..14].copy_from_slice(&[0x08, 0x06]);
    let now = p.now;
    p.r[1].handle_frame(now, &hello);
    p.drain(1);
    // Each record: length (3 bytes, up to 70,000), destination kind, EtherType, then bytes
    // that repeat to fill the frame.
    for rec in data.chunks(16) {
        if rec.len() < 6 {
            break;
        }
        let len = (usize::from(rec[0]) << 16 | usize::from(rec[1]) << 8 | usize::from(rec[2])) % 70_001;
        let dst: [u8; 6] = match rec[3] % 3 {
            0 => MAC_B,
            1 => [0xff; 6],
            _ => [rec[3], 1, 2, 3, 4, 5],
        };
        let mut f = Vec::with_capacity(len);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&MAC_A);
        f.extend_from_slice(&[if rec[4] & 1 == 0 { 0x08 } else { 0x86 }, if rec[4] & 2 == 0 { 0x00 } else { 0xdd }]);
        let fill = &rec[5..];
        while f.len() < len {
            f.extend_from_slice(fill);
        }
        f.truncate(len);
        let now = p.now;
        let _ = p.r[0].frame_limit(now, &f);
        let s = *p.r[0].stats();
        p.r[0].handle_frame(now, &f);
        let t = *p.r[0].stats();
        let acc = |s: &router_core::Stats| {
            s.frames_local + s.frames_sent + s.frames_flooded + s.icmp_too_big_sent + s.frames_fragmented + s.drops.total()
        };
        assert!(acc(&t) > acc(&s), "a frame of {len} bytes went unaccounted");
        p.drain(0);
    }
});
