#![no_main]
//! Datagrams to an encrypted router: arbitrary ones, and a genuine sealed datagram with the
//! input XORed into it. Each is dropped and counted unless it is the genuine one, and nothing
//! forged reaches the bridge.
use libfuzzer_sys::fuzz_target;
use router_core::{Destination, TRANSMIT_BUF_MIN};
use weave_benches::{frame, Pair, ADDRS};

fuzz_target!(|data: &[u8]| {
    let mut p = Pair::established_with(Some("fuzz"));
    let now = p.now;
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    let from = ADDRS[0].parse().unwrap();
    let (a_mac, b_mac) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    p.routers[1].handle_frame(now, &frame([0xff; 6], b_mac, 60));
    p.shuttle();
    p.routers[0].handle_frame(now, &frame(b_mac, a_mac, 200));
    let mut genuine = Vec::new();
    while let Some(t) = p.routers[0].poll_transmit(&mut buf) {
        if matches!(t.dest, Destination::Udp(_)) {
            genuine = buf[..t.len].to_vec();
        }
    }
    assert!(!genuine.is_empty());
    let b = &mut p.routers[1];
    let mut d = genuine.clone();
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    if mode & 1 == 0 {
        d = rest.to_vec();
    } else {
        for (i, x) in rest.iter().enumerate() {
            if let Some(y) = d.get_mut(i) {
                *y ^= x;
            }
        }
        if mode & 2 == 2 {
            d.truncate(rest.len());
        }
    }
    let before = *b.stats();
    b.handle_datagram(now, from, &d);
    let after = *b.stats();
    let mut injected = 0;
    while let Some(t) = b.poll_transmit(&mut buf) {
        injected += usize::from(t.dest == Destination::Bridge);
    }
    if d == genuine {
        assert_eq!(injected, 1);
    } else {
        assert_eq!(injected, 0, "a forged datagram reached the bridge");
        assert!(after.drops.total() > before.drops.total(), "a forged datagram was not counted");
    }
});
