//! Every scenario file passes every check, and runs the same way twice.

use std::path::{Path, PathBuf};

use weave_sim::{run, Scenario, Trace};

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("regressions")] {
        let Ok(entries) = std::fs::read_dir(&sub) else { continue };
        for e in entries {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "toml") && p.file_name().is_some_and(|n| n != "Cargo.toml") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn load(p: &Path) -> Scenario {
    let text = std::fs::read_to_string(p).expect("readable");
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_scenario_file_passes() {
    suite(false);
}

/// The same suite with every router given a password: the PAKE handshake, sealed control
/// records and sealed datagrams, checked in their plaintext form.
#[test]
fn every_scenario_file_passes_encrypted() {
    suite(true);
}

fn suite(encrypted: bool) {
    let files = files();
    assert!(files.len() >= 11, "the suite has its scenarios");
    let mut failed = Vec::new();
    for p in &files {
        let mut s = load(p);
        if encrypted {
            s.encrypt();
        }
        let (o, _) = run(&s, s.seed, Trace::new());
        println!(
            "{:<40} {} hosts, {:>8} events, converged {:?}, pinged {:?}, {:?} wall",
            p.file_name().unwrap().to_string_lossy(),
            o.hosts,
            o.sim.events,
            o.converged_after,
            o.pinged_after,
            o.wall
        );
        if let Some(v) = o.first_failure() {
            failed.push(format!(
                "{}: [{}] at {}: {} (replay: weave-sim run {} --seed {}{})",
                p.display(),
                v.check,
                v.at,
                v.detail,
                p.display(),
                s.seed,
                if encrypted { " --encrypt" } else { "" }
            ));
        }
    }
    assert!(failed.is_empty(), "failing scenarios:\n{}", failed.join("\n"));
}

#[test]
fn the_same_seed_gives_the_same_trace_and_another_seed_does_not() {
    for name in ["line-5.toml", "crash-restart.toml", "ring-8-cut.toml"] {
        let s = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(name));
        let (a, wa) = run(&s, 7, Trace::new().with_hashes());
        let (b, wb) = run(&s, 7, Trace::new().with_hashes());
        assert_eq!(a.trace_hash, b.trace_hash, "{name}");
        assert_eq!(wa.trace.hashes(), wb.trace.hashes(), "{name}: every event equal");
        let (c, _) = run(&s, 8, Trace::new());
        assert_ne!(a.trace_hash, c.trace_hash, "{name}: the seed matters");
    }
}

/// Encrypted runs are as reproducible: key material comes from the seed.
#[test]
fn encrypted_runs_are_deterministic_too() {
    let mut s = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crash-restart.toml"));
    s.encrypt();
    let (a, wa) = run(&s, 7, Trace::new().with_hashes());
    let (b, wb) = run(&s, 7, Trace::new().with_hashes());
    assert!(a.passed(), "{:?}", a.first_failure());
    assert_eq!(wa.trace.hashes(), wb.trace.hashes(), "every event equal");
    let (plain, _) = run(&load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crash-restart.toml")), 7, Trace::new());
    assert_ne!(a.trace_hash, plain.trace_hash, "sealed datagrams are not the plaintext ones");
    assert_eq!(a.trace_hash, b.trace_hash);
}

/// Trace hashes recorded with a release build of `weave-sim` (`scenarios/traces.golden`); the
/// test build (debug assertions and overflow checks on) must reproduce them bit for bit.
/// After a deliberate behaviour change, regenerate with `scripts/golden-traces`.
#[test]
fn traces_match_the_release_build() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = std::fs::read_to_string(dir.join("traces.golden")).expect("traces.golden");
    let mut checked = 0;
    for line in golden.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (file, seed, hash) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let s = load(&dir.join(file));
        let seed: u64 = seed.parse().unwrap();
        let (o, _) = run(&s, seed, Trace::new());
        assert_eq!(format!("{:016x}", o.trace_hash), hash, "{file} seed {seed}: trace differs from the release build");
        checked += 1;
    }
    assert!(checked >= 5);
}

/// One peer with the wrong password: it is refused (each side says why), never joins anyone's
/// view, and the others converge among themselves.
#[test]
fn a_peer_with_the_wrong_password_is_isolated_and_the_rest_converge() {
    let s = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("wrong-password.toml"));
    let (o, mut w) = run(&s, s.seed, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    let now = w.now;
    let mallory = w.hosts.iter().position(|h| h.name == "mallory").expect("mallory");
    let names: Vec<_> = w.hosts.iter().map(|h| h.router.as_ref().expect("running").name()).collect();
    for (i, h) in w.hosts.iter_mut().enumerate() {
        let r = h.router.as_mut().expect("running");
        let st = r.status(now);
        let view: Vec<_> = st.peers.iter().map(|p| p.name).collect();
        if i == mallory {
            assert_eq!(view, vec![names[i]], "mallory knows only itself");
            assert!(st.connections.iter().all(|c| c.state != router_core::status::ConnState::Established));
            assert!(r.stats().password_mismatches >= 5, "refused by each of the five");
        } else {
            assert!(!view.contains(&names[mallory]), "{} never hears of mallory", h.name);
            assert_eq!(view.len(), names.len() - 1, "{} sees the other five", h.name);
            assert!(r.stats().password_mismatches >= 1, "{} refused mallory", h.name);
            assert!(st.recent_failures.iter().any(|f| f.reason.contains("password mismatch")), "{} says why", h.name);
        }
    }
}

/// The hostile-container scenario's checks can fail: with the flood budgets lifted, the flood
/// fills the thin links and the bystanders' pings are lost while it lasts. Its spoofer is real:
/// frames for the victim's MAC reach it (the network cannot tell the two apart).
#[test]
fn without_flood_budgets_the_hostile_containers_break_the_others_pings() {
    let mut s = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("hostile-container.toml"));
    let (o, _) = run(&s, s.seed, Trace::new());
    assert!(o.passed(), "{:?}", o.first_failure());
    assert!(o.spoofed_deliveries > 0, "the spoofer received the victim's frames");
    assert!(o.routers.drops.get(router_core::DropReason::FloodLimited) > 100_000);
    s.router.flood_rate = Some(1_000_000);
    s.router.flood_rate_total = Some(10_000_000);
    let (o, _) = run(&s, s.seed, Trace::new());
    let f = o.first_failure().expect("the pings during the flood fail");
    assert_eq!(f.check, "pings-during", "{f:?}");
    let w = &o.during[0];
    assert!(w.answered * 10 < w.sent * 9, "{w:?}");
}
