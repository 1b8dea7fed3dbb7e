//! Random fault schedules, and shrinking a failing scenario to a small one that still fails.

use rand_chacha::ChaCha8Rng;
use router_core::Duration;

use crate::rng::below;
use crate::run::{run, Outcome};
use crate::scenario::{Dur, Fault, FaultAction, FaultKind, RandomFaults, Scenario};
use crate::trace::Trace;

fn pick<'a, T>(r: &mut ChaCha8Rng, v: &'a [T]) -> &'a T {
    &v[below(r, v.len() as u64) as usize]
}

fn subset(r: &mut ChaCha8Rng, names: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for n in names {
        if below(r, 2) == 0 {
            a.push(n.clone())
        } else {
            b.push(n.clone())
        }
    }
    if a.is_empty() {
        a.push(b.pop().expect("at least one host"));
    }
    (a, b)
}

/// Draws the faults a [`RandomFaults`] section asks for, each undone within `max_outage`,
/// everything healed at `end`.
pub fn random_schedule(s: &Scenario, rf: &RandomFaults, r: &mut ChaCha8Rng) -> Vec<Fault> {
    let names = s.host_names();
    let mut out = Vec::new();
    let span = rf.end.0.saturating_sub(rf.start.0).as_micros() as u64;
    let at = |us: u64| Dur(rf.start.0 + Duration::from_micros(us));
    for _ in 0..rf.count {
        let t = below(r, span.max(1));
        let outage = 100_000 + below(r, (rf.max_outage.0.as_micros() as u64).max(1));
        let undo = at((t + outage).min(span));
        let (fault, undo_action) = match *pick(r, &rf.kinds) {
            FaultKind::Partition => {
                let (g, _) = subset(r, &names);
                (FaultAction::Partition { groups: vec![g] }, Some(FaultAction::Heal))
            }
            FaultKind::OneWay => {
                let (from, to) = subset(r, &names);
                if to.is_empty() {
                    continue;
                }
                (FaultAction::OneWay { from, to }, Some(FaultAction::Heal))
            }
            kind @ (FaultKind::Cut | FaultKind::UdpBlock) => {
                if names.len() < 2 {
                    continue;
                }
                let a = pick(r, &names).clone();
                let b = pick(r, &names).clone();
                if a == b {
                    continue;
                }
                if kind == FaultKind::Cut {
                    (FaultAction::Cut { a: a.clone(), b: b.clone() }, Some(FaultAction::Repair { a, b }))
                } else {
                    (FaultAction::UdpBlock { a: a.clone(), b: b.clone() }, Some(FaultAction::UdpUnblock { a, b }))
                }
            }
            kind @ (FaultKind::Crash | FaultKind::CrashWipe) => {
                let h = pick(r, &names).clone();
                let wipe = kind == FaultKind::CrashWipe;
                (FaultAction::Crash { host: h.clone() }, Some(FaultAction::Restart { host: h, wipe }))
            }
            FaultKind::Pause => {
                let h = pick(r, &names).clone();
                (FaultAction::Pause { host: h.clone() }, Some(FaultAction::Resume { host: h }))
            }
            FaultKind::Move => {
                if s.workload.containers_per_host == 0 {
                    continue;
                }
                let from = pick(r, &names).clone();
                let k = below(r, s.workload.containers_per_host as u64);
                let to = pick(r, &names).clone();
                (FaultAction::Move { container: format!("{from}/c{k}"), to }, None)
            }
        };
        out.push(Fault { at: at(t), action: fault });
        if let Some(u) = undo_action {
            out.push(Fault { at: undo, action: u });
        }
    }
    out.push(Fault { at: rf.end, action: FaultAction::Heal });
    out.sort_by_key(|f| f.at);
    out
}

/// The scenario with its random faults written out as an explicit timeline.
pub fn materialise(s: &Scenario, seed: u64) -> Scenario {
    let mut m = s.clone();
    m.seed = seed;
    if let Some(rf) = m.random_faults.take() {
        m.faults.extend(random_schedule(s, &rf, &mut crate::rng::stream(seed, "faults", 0)));
        m.faults.sort_by_key(|f| f.at);
    }
    m
}

fn fails_like(s: &Scenario, seed: u64, check: &str) -> bool {
    let (o, _) = run(s, seed, Trace::new());
    o.first_failure().is_some_and(|v| v.check == check)
}

fn mentions(f: &Fault, host: &str) -> bool {
    let j = serde_json::to_string(&f.action).unwrap_or_default();
    j.contains(&format!("\"{host}\"")) || j.contains(&format!("\"{host}/"))
}

/// Shrinks a failing scenario: fewer faults, then fewer hosts, as long as it fails the same
/// check. At most `budget` runs.
pub fn shrink(failing: &Scenario, seed: u64, outcome: &Outcome, mut budget: usize) -> Scenario {
    let check = outcome.first_failure().map(|v| v.check).unwrap_or("none").to_string();
    let mut best = materialise(failing, seed);
    // Fewer faults, from the last one back.
    let mut i = best.faults.len();
    while i > 0 && budget > 0 {
        i -= 1;
        let mut t = best.clone();
        t.faults.remove(i);
        budget -= 1;
        if fails_like(&t, seed, &check) {
            best = t;
        }
    }
    // Fewer hosts (only for counted hosts): drop the highest while it still fails.
    while budget > 0 {
        let Some(n) = best.hosts.count.filter(|&n| n > 1) else { break };
        let last = format!("h{}", n - 1);
        let mut t = best.clone();
        t.hosts.count = Some(n - 1);
        t.faults.retain(|f| !mentions(f, &last));
        t.links.retain(|l| l.a != last && l.b != last);
        t.underlay.links.retain(|[a, b]| *a != last && *b != last);
        t.router.peers.remove(&last);
        for v in t.router.peers.values_mut() {
            v.retain(|p| *p != last);
        }
        budget -= 1;
        if Scenario::parse(&t.to_toml()).is_ok() && fails_like(&t, seed, &check) {
            best = t;
        } else {
            break;
        }
    }
    best.name = format!("{} (shrunk)", failing.name);
    best
}
