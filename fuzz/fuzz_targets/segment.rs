#![no_main]
//! Completing captured frames (checksums, TCP segments cut to the MTU) never panics on any
//! bytes and any MTU; when a frame is cut, every piece fits the MTU. Half the inputs get a
//! well-formed Ethernet, IPv4 or IPv6, and TCP or UDP header in front of the fuzzer's bytes
//! (with lengths that agree), so that the cutting path is reached, not only the parser.
use libfuzzer_sys::fuzz_target;
use weave_host_io::segment::complete;

fn framed(kind: u8, rest: &[u8]) -> Vec<u8> {
    let v6 = kind & 2 != 0;
    let tcp = kind & 4 != 0;
    let l4_header = if tcp { 20 } else { 8 };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l4_len = l4_header + rest.len();
    if v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[if tcp { 6 } else { 17 }, 64]);
        f.extend_from_slice(&[0xfd; 32]);
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, if tcp { 6 } else { 17 }, 0, 0, 10, 32, 0, 1, 10, 32, 0, 2]);
    }
    if tcp {
        f.extend_from_slice(&[0x13, 0x89, 0x13, 0x8a, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, kind & 0x3f, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&[0x13, 0x89, 0x13, 0x8a]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(rest);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = data.split_first_chunk::<3>() else { return };
    let mtu = usize::from(u16::from_be_bytes([m[0], m[1]])) % 9100;
    let frame = if m[2] & 1 == 1 { framed(m[2] >> 1, rest) } else { rest.to_vec() };
    let mut scratch = Vec::new();
    let mut pieces = Vec::new();
    complete(&frame, mtu, &mut scratch, |s| pieces.push(s.to_vec()));
    assert!(!pieces.is_empty(), "every frame comes out, whole or cut");
    if pieces.len() > 1 {
        for p in &pieces {
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
