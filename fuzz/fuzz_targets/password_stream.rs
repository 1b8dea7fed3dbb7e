#![no_main]
//! Arbitrary bytes from a peer during a password handshake (handshake with a PAKE message,
//! key confirmation, then sealed records) never panic the router, and never bring a
//! connection up: without the password no input can produce a valid confirmation.
use libfuzzer_sys::fuzz_target;
use router_core::wire::control::Message;
use router_core::wire::preamble::Preamble;
use router_core::{Config, Event, Instant, Password, PeerName, Router, TRANSMIT_BUF_MIN};

fuzz_target!(|data: &[u8]| {
    let mut cfg = Config::new(PeerName::from_u64(1));
    cfg.password = Some(Password::new("fuzz").unwrap());
    let mut r = Router::seeded(Instant::ZERO, cfg).unwrap();
    let conn = r.accept(Instant::ZERO, "10.0.0.2:40000".parse().unwrap());
    let mut bytes = Vec::new();
    // Most inputs start with a valid preamble and a handshake header so the fuzzer reaches
    // the PAKE message, the confirmation and the sealed records.
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend_from_slice(&Preamble::OURS.emit());
        if data.first().is_some_and(|b| b & 2 == 2) && data.len() > 34 {
            let mut pake = [0u8; 33];
            pake.copy_from_slice(&data[1..34]);
            let hs = router_core::wire::control::Handshake {
                name: PeerName::from_u64(2),
                uid: router_core::PeerUid(9),
                nickname: String::new(),
                udp_port: 6783,
                tcp_port: 6783,
                session: 1,
                flags: 0,
                pake: Some(pake),
            };
            Message::Handshake(hs).emit(&mut bytes);
            bytes.extend_from_slice(&data[34..]);
        } else {
            bytes.extend_from_slice(&data[1..]);
        }
    } else {
        bytes.extend_from_slice(data.get(1..).unwrap_or_default());
    }
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    for (i, chunk) in bytes.chunks(97).enumerate() {
        let now = Instant::from_millis(i as u64);
        r.handle_stream(now, conn, chunk);
        while r.poll_transmit(&mut buf).is_some() {}
        while let Some(e) = r.poll_event() {
            assert!(!matches!(e, Event::ConnectionUp { .. }), "a peer without the password got in");
        }
        r.handle_timeout(now);
    }
    let _ = r.status(Instant::from_millis(100_000));
});
