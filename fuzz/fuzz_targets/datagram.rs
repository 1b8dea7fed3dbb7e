#![no_main]
//! Datagram decoding never panics; a checked frames datagram re-encodes to the same bytes.
use libfuzzer_sys::fuzz_target;
use router_core::wire::datagram::{emit_heartbeat, push_frame, push_probe, Datagram, Header, Kind, FRAMES_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(d) = Datagram::new_checked(data) else { return };
    match d.kind() {
        Kind::Heartbeat => {
            let hb = d.heartbeat().expect("heartbeat kind has a body");
            let mut out = [0u8; 64];
            let n = emit_heartbeat(d.src(), d.dst(), hb, &mut out);
            // Heartbeats carry no flags or hop limit; compare the rest.
            assert_eq!(&out[4..n], &data[4..]);
        }
        Kind::Frames => {
            let Ok(frames) = d.frames() else { return };
            let mut out = vec![0u8; FRAMES_HEADER_LEN];
            let h = Header {
                kind: Kind::Frames,
                flags: d.flags(),
                hop_limit: d.hop_limit(),
                src: d.src(),
                dst: d.dst(),
                seq: d.seq(),
            };
            h.emit(&mut out);
            for f in frames {
                assert!(f.len() >= 14);
                push_frame(&mut out, f);
            }
            assert_eq!(out, data);
        }
        Kind::Probe => {
            let (session, id) = d.probe().expect("probe kind has a body");
            let mut out = Vec::new();
            push_probe(d.src(), d.dst(), session, id, data.len(), &mut out);
            // Probes carry no flags or hop limit, and their padding is not read; compare the rest.
            assert_eq!(out.len(), data.len());
            assert_eq!(&out[4..28], &data[4..28]);
        }
    }
});
