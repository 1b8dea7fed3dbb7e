#![no_main]
//! Arbitrary bytes on an established encrypted control connection (where only sealed records
//! are valid) never panic the router: the first record that fails to open closes the
//! connection.
use libfuzzer_sys::fuzz_target;
use router_core::{ConnId, Event, TRANSMIT_BUF_MIN};
use weave_benches::Pair;

fuzz_target!(|data: &[u8]| {
    let mut p = Pair::established_with(Some("fuzz"));
    let b = &mut p.routers[1];
    let now = p.now;
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    while b.poll_event().is_some() {}
    for chunk in data.chunks(61) {
        b.handle_stream(now, ConnId(1), chunk);
        while b.poll_transmit(&mut buf).is_some() {}
    }
    let mut closed = false;
    while let Some(e) = b.poll_event() {
        closed |= matches!(e, Event::ConnectionDown { .. });
    }
    // Forging a record means forging a Poly1305 tag: any input of a whole record's length
    // (4 + 17 bytes at least) must have closed the connection.
    if data.len() >= 21 {
        let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        if (17..=65_552).contains(&len) && data.len() >= 4 + len {
            assert!(closed, "a forged record was accepted");
        }
    }
});
