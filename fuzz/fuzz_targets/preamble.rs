#![no_main]
//! Preamble decoding never panics, and whatever decodes re-encodes to the same bytes.
use libfuzzer_sys::fuzz_target;
use router_core::wire::preamble::{Preamble, LEN};

fuzz_target!(|data: &[u8]| {
    let Some(head) = data.get(..LEN) else { return };
    let head: &[u8; LEN] = head.try_into().unwrap();
    if let Ok(p) = Preamble::parse(head) {
        assert_eq!(&p.emit(), head);
        assert!(p.version_min <= p.version_max);
    }
});
