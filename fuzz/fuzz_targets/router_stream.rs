#![no_main]
//! Arbitrary bytes on a control connection never panic the router; they are refused.
use libfuzzer_sys::fuzz_target;
use router_core::wire::preamble::Preamble;
use router_core::{Config, Instant, PeerName, Router, TRANSMIT_BUF_MIN};

fuzz_target!(|data: &[u8]| {
    let mut r = Router::new(Instant::ZERO, Config::new(PeerName::from_u64(1))).unwrap();
    let conn = r.accept(Instant::ZERO, "10.0.0.2:40000".parse().unwrap());
    // Half the inputs start with a valid preamble so the fuzzer reaches the messages.
    let mut bytes = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend_from_slice(&Preamble::OURS.emit());
    }
    bytes.extend_from_slice(data.get(1..).unwrap_or_default());
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    for (i, chunk) in bytes.chunks(97).enumerate() {
        let now = Instant::from_millis(i as u64);
        r.handle_stream(now, conn, chunk);
        while r.poll_transmit(&mut buf).is_some() {}
        while r.poll_event().is_some() {}
        r.handle_timeout(now);
    }
    let _ = r.status(Instant::from_millis(100_000));
});
