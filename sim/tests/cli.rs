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

/// An exploration split into shards covers the same seeds as one run, each once, and
/// `merge` says so (and refuses shards that do not add up).
#[test]
fn shards_cover_the_seeds_of_one_exploration_exactly_once() {
    let dir = std::env::temp_dir().join(format!("weave-sim-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/two-hosts.toml");
    let explore = |shard: Option<&str>, env: &[(&str, &str)], out: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weave-sim"));
        c.args(["explore", file, "--runs", "7", "--seed", "40", "--summary"]).arg(dir.join(out));
        if let Some(s) = shard {
            c.args(["--shard", s]);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{o:?}");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(out)).unwrap()).unwrap();
        v["seeds"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect::<Vec<u64>>()
    };
    let whole = explore(None, &[], "whole.json");
    assert_eq!(whole, (40..47).collect::<Vec<_>>());
    let a = explore(Some("0/3"), &[], "a.json");
    let b = explore(None, &[("WEAVE_SIM_SHARD", "1/3")], "b.json");
    let c = explore(None, &[("JOB_COMPLETION_INDEX", "2"), ("WEAVE_SIM_SHARDS", "3")], "c.json");
    let mut union: Vec<u64> = a.iter().chain(&b).chain(&c).copied().collect();
    union.sort_unstable();
    assert_eq!(union, whole, "the union is the whole run");
    assert!(a.iter().all(|s| !b.contains(s) && !c.contains(s)) && b.iter().all(|s| !c.contains(s)), "no overlap");
    let merge = |names: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weave-sim"))
            .arg("merge")
            .args(names.iter().map(|n| dir.join(n)))
            .output()
            .unwrap()
    };
    let o = merge(&["a.json", "b.json", "c.json"]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 of 7 seeds failed (3 shards)"), "{o:?}");
    let o = merge(&["a.json", "c.json"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("each once"), "{o:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run --report FILE` writes the picture; a report that cannot be written is an error that
/// names the file.
#[test]
fn run_writes_its_report_where_asked() {
    let dir = std::env::temp_dir().join(format!("weave-sim-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/two-hosts.toml");
    let path = dir.join("run.svg");
    let out =
        Command::new(env!("CARGO_BIN_EXE_weave-sim")).args(["run", file, "--report"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(r#"data-host="h0""#) && svg.contains(r#"data-host="h1""#));
    let bad = dir.join("no-such-dir").join("run.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_weave-sim")).args(["run", file, "--report"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the report") && err.contains("no-such-dir"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
