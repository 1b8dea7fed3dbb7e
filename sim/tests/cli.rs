//! The `weave-sim` binary as a user runs it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// `weave-sim … | head -1`: the reader closes the pipe early; the simulator ends quietly
/// (no panic, no backtrace, success) instead of crashing on the broken pipe.
#[test]
fn a_reader_that_stops_early_ends_the_run_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weave-sim"))
        .args(["bench", "--peers", "100", "--seconds", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weave-sim starts");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    out.read_line(&mut first).expect("the header line");
    assert!(first.contains("peers"), "{first:?}");
    drop(out);
    let status = child.wait().expect("weave-sim ends");
    let mut err = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
