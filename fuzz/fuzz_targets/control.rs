#![no_main]
//! Control framing and message decoding never panic; a decoded message re-encodes to exactly
//! the bytes it came from (every message has one encoding).
use libfuzzer_sys::fuzz_target;
use router_core::wire::control::{split_frame, Message, BODY_MAX, FRAME_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(n)) = split_frame(rest, BODY_MAX) {
        let frame = &rest[..FRAME_HEADER_LEN + n];
        if let Ok(m) = Message::parse(&frame[FRAME_HEADER_LEN..]) {
            let mut out = Vec::new();
            m.emit(&mut out);
            assert_eq!(out, frame, "{m:?}");
        }
        rest = &rest[FRAME_HEADER_LEN + n..];
    }
});
