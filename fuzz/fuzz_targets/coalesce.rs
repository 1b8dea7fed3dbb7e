#![no_main]
//! Coalescing a batch of frames for the bridge never panics on any bytes, accounts for every
//! frame exactly once (alone, or as a member of one super-frame), keeps each super-frame
//! within the IP limit, and joins only segments whose payloads follow each other. Half the
//! inputs are a well-formed TCP flow cut into segments (by `segment::complete`, as a sending
//! router cuts them) with the fuzzer's bytes flipping, dropping or repeating some, so that
//! joining is reached, not only the parser.
use libfuzzer_sys::fuzz_target;
use weave_host_io::segment::complete;
use weave_host_io::vnet::{coalesce, Piece};

fn flow(payload: &[u8], mss: usize) -> Vec<Vec<u8>> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
    f.extend_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 32, 0, 1, 10, 32, 0, 2]);
    f.extend_from_slice(&[0x13, 0x89, 0x13, 0x8a, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    let mut out = Vec::new();
    complete(&f, 40 + mss, &mut Vec::new(), |s| out.push(s.to_vec()));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = data.split_first_chunk::<4>() else { return };
    let mut frames: Vec<Vec<u8>> = if m[0] & 1 == 1 {
        let mss = 1 + usize::from(u16::from_be_bytes([m[1], m[2]])) % 2000;
        let mut segs = flow(rest, mss);
        // Edits: flip a byte, drop a segment, or repeat one, as the fuzzer's bytes say.
        for (i, e) in rest.iter().take(usize::from(m[3] % 8)).enumerate() {
            let n = segs.len();
            match e % 3 {
                0 => {
                    let s = &mut segs[i % n];
                    let at = usize::from(*e) % s.len();
                    s[at] ^= 0x55;
                }
                1 if n > 1 => drop(segs.remove(i % n)),
                _ => segs.insert(i % n, segs[usize::from(*e) % n].clone()),
            }
        }
        segs
    } else {
        rest.chunks(1 + usize::from(m[1]) % 200).map(<[u8]>::to_vec).collect()
    };
    frames.truncate(64);
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let (mut out, mut members, mut pieces) = (Vec::new(), Vec::new(), Vec::new());
    coalesce(&refs, &mut out, &mut members, &mut pieces);
    let mut seen = vec![0u32; refs.len()];
    for p in &pieces {
        match p {
            Piece::Frame(i) => seen[*i] += 1,
            Piece::Joined { hdr, members: r, .. } => {
                assert!(r.len() >= 2, "a super-frame joins segments");
                let bytes = p.parts(&refs, &out, &members).concat();
                assert!(bytes.len() <= 14 + 65_535, "within the IP limit");
                let seq = |f: &[u8]| {
                    let at = if f[12..14] == [0x86, 0xdd] { 14 + 40 + 4 } else { 14 + 20 + 4 };
                    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
                };
                let mut next = seq(refs[members[r.start]]);
                for &i in &members[r.clone()] {
                    seen[i] += 1;
                    assert_eq!(seq(refs[i]), next, "segments follow each other");
                    next = next.wrapping_add((refs[i].len() - usize::from(hdr.hdr_len)) as u32);
                }
            }
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "every frame once: {seen:?}");
});
