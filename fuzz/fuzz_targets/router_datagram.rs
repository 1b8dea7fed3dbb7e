#![no_main]
//! Arbitrary UDP datagrams and captured frames never panic the router. A router with no
//! connections has no one to accept data from: every datagram must be dropped and counted.
use libfuzzer_sys::fuzz_target;
use router_core::{Config, Instant, PeerName, Router, TRANSMIT_BUF_MIN};

fuzz_target!(|data: &[u8]| {
    let mut r = Router::new(Instant::ZERO, Config::new(PeerName::from_u64(1))).unwrap();
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    for (i, d) in data.split(|&b| b == 0xA5).enumerate() {
        let now = Instant::from_millis(i as u64);
        let before = r.stats().drops.total();
        r.handle_datagram(now, "10.0.0.2:6783".parse().unwrap(), d);
        // Counted per datagram or per frame, but never not at all.
        assert!(r.stats().drops.total() > before, "datagram not counted as dropped");
        r.handle_frame(now, d);
        while r.poll_transmit(&mut buf).is_some() {}
    }
});
