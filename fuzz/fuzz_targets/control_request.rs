#![no_main]
//! The control socket's request check never panics on any line; a request it accepts
//! serialises back to a line it accepts as the same request. Half the inputs are wrapped as a
//! JSON request with the fuzzer's bytes as its peer or CIDR, so the field checks are reached,
//! not only the JSON parser.
use libfuzzer_sys::fuzz_target;
use weave_host_io::control::{parse_request, ControlRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let line = match kind % 4 {
        0 => serde_json::json!({"cmd": "connect", "peers": [text]}).to_string(),
        1 => serde_json::json!({"cmd": "expose", "cidr": text}).to_string(),
        _ => text.into_owned(),
    };
    if let Ok(req) = parse_request(&line) {
        let again = serde_json::to_string(&req).expect("requests serialise");
        let back: ControlRequest = parse_request(&again).expect("a checked request checks again");
        assert_eq!(back, req);
    }
});
