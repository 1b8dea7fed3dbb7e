//! Liveness once the faults stop: the overlay that should form, views that agree, routes
//! that are shortest over it, and probe pings between connected same-subnet pairs.

use std::collections::{BTreeMap, VecDeque};

use router_core::{Duration, Instant, PeerName};

use super::{Probe, Violation};
use crate::world::{peer_name, World};

/// Components of the overlay that should form: pairs told (or able, with discovery) to
/// connect whose hosts run and reach each other both ways over UDP.
fn expected_graph(w: &World) -> Vec<Vec<u32>> {
    let n = w.hosts.len() as u32;
    let discovery = w.scenario.router.discovery;
    let mut adj = vec![Vec::new(); n as usize];
    for a in 0..n {
        if !w.hosts[a as usize].running() {
            continue;
        }
        let cands: Vec<u32> = if discovery { w.net.neighbours(a) } else { w.hosts[a as usize].targets.clone() };
        for b in cands {
            if a != b
                && w.hosts[b as usize].running()
                && w.net.udp_up(a, b)
                && w.net.udp_up(b, a)
                && w.password_of(a) == w.password_of(b)
            {
                adj[a as usize].push(b);
                adj[b as usize].push(a);
            }
        }
    }
    for v in &mut adj {
        v.sort_unstable();
        v.dedup();
    }
    adj
}

fn bfs(adj: &[Vec<u32>], from: u32) -> Vec<u32> {
    let mut d = vec![u32::MAX; adj.len()];
    d[from as usize] = 0;
    let mut q = VecDeque::from([from]);
    while let Some(u) = q.pop_front() {
        for &v in &adj[u as usize] {
            if d[v as usize] == u32::MAX {
                d[v as usize] = d[u as usize] + 1;
                q.push_back(v);
            }
        }
    }
    d
}

/// The links both ends advertise as established, among the candidates `cand`: the overlay a
/// network with more candidates per host than `conn_limit` settles on.
fn established_graph(w: &World, cand: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let n = w.hosts.len();
    let links_of = |a: usize| -> Vec<u32> {
        let Some(r) = w.hosts[a].router.as_ref() else { return Vec::new() };
        let Some(e) = r.topology().get(&peer_name(a as u32)) else { return Vec::new() };
        let mut v: Vec<u32> = e
            .conns
            .iter()
            .filter(|c| c.established)
            .filter_map(|c| (0..n as u32).find(|&b| peer_name(b) == c.peer))
            .collect();
        v.sort_unstable();
        v
    };
    let all: Vec<Vec<u32>> = (0..n).map(links_of).collect();
    (0..n)
        .map(|a| {
            cand[a]
                .iter()
                .copied()
                .filter(|&b| all[a].binary_search(&b).is_ok() && all[b as usize].binary_search(&(a as u32)).is_ok())
                .collect()
        })
        .collect()
}

/// Whether every host reaches the same hosts in `x` as in `y`.
fn same_components(x: &[Vec<u32>], y: &[Vec<u32>]) -> Result<(), String> {
    for a in 0..x.len() as u32 {
        let (dx, dy) = (bfs(x, a), bfs(y, a));
        if let Some(b) = (0..x.len()).find(|&b| (dx[b] == u32::MAX) != (dy[b] == u32::MAX)) {
            return Err(format!("host {a} and host {b}: the overlay does not connect what the network could"));
        }
    }
    Ok(())
}

/// Views agree within each expected component, and every router's routes are the shortest
/// paths of the real overlay.
pub fn converged(w: &mut World) -> Result<(), String> {
    let cand = expected_graph(w);
    // More candidates than a router may hold connections: expect the overlay the routers
    // settled on, as long as it connects everything the network could.
    let limit = w.scenario.router.conn_limit.unwrap_or(100);
    let adj = if cand.iter().any(|v| v.len() > limit) {
        let actual = established_graph(w, &cand);
        same_components(&cand, &actual)?;
        actual
    } else {
        cand
    };
    let n = w.hosts.len() as u32;
    let mut comp = vec![u32::MAX; n as usize];
    for a in 0..n {
        if comp[a as usize] != u32::MAX || !w.hosts[a as usize].running() {
            continue;
        }
        let d = bfs(&adj, a);
        let members: Vec<u32> = (0..n).filter(|&b| d[b as usize] != u32::MAX).collect();
        for &m in &members {
            comp[m as usize] = a;
        }
        // Views of the component's entries agree (one ordered walk of each view).
        let mut names: Vec<(PeerName, u32)> = members.iter().map(|&m| (peer_name(m), m)).collect();
        names.sort_unstable();
        let view_of = |w: &World, h: u32| -> Vec<Option<std::sync::Arc<router_core::wire::gossip::PeerEntry>>> {
            let t = w.hosts[h as usize].router.as_ref().expect("running").topology();
            let mut entries = t.values().peekable();
            names
                .iter()
                .map(|(p, _)| {
                    while entries.next_if(|e| e.name < *p).is_some() {}
                    entries.next_if(|e| e.name == *p).cloned()
                })
                .collect()
        };
        let first = view_of(w, a);
        for &m in &members[1..] {
            let other = view_of(w, m);
            if other != first {
                let k = first.iter().zip(&other).position(|(x, y)| x != y).expect("views differ somewhere");
                let show = |e: &Option<std::sync::Arc<router_core::wire::gossip::PeerEntry>>| match e {
                    Some(e) => format!("version {} with {} links", e.version, e.conns.len()),
                    None => "nothing".into(),
                };
                return Err(format!(
                    "{} and {} hold different views: for {} one has {}, the other {}",
                    w.hosts[a as usize].name,
                    w.hosts[m as usize].name,
                    w.hosts[names[k].1 as usize].name,
                    show(&first[k]),
                    show(&other[k])
                ));
            }
        }
        crate::world::ipam::agreed(w, &members)?;
        // Routes are shortest over the links that really work; nothing else is reachable.
        for &m in &members {
            let truth = bfs(&adj, m);
            let dist: BTreeMap<_, _> =
                w.hosts[m as usize].router.as_mut().expect("running").routes().distances().into_iter().collect();
            for b in 0..n {
                if b == m {
                    continue;
                }
                let want = (truth[b as usize] != u32::MAX).then_some(truth[b as usize]);
                let got = dist.get(&peer_name(b)).copied();
                if got != want {
                    return Err(format!(
                        "{} sees {} at {:?} hops, the network has it at {:?}",
                        w.hosts[m as usize].name, w.hosts[b as usize].name, got, want
                    ));
                }
            }
        }
    }
    Ok(())
}

fn choose_probes(w: &mut World) -> Vec<Probe> {
    let adj = expected_graph(w);
    let n = w.hosts.len() as u32;
    let mut comp = vec![u32::MAX; n as usize];
    for a in 0..n {
        if comp[a as usize] == u32::MAX {
            let d = bfs(&adj, a);
            for b in 0..n {
                if d[b as usize] != u32::MAX {
                    comp[b as usize] = a;
                }
            }
        }
    }
    let cs = &w.containers;
    let mut pairs = Vec::new();
    for a in 0..cs.len() as u32 {
        for b in 0..cs.len() as u32 {
            let (ca, cb) = (&cs[a as usize], &cs[b as usize]);
            if a != b
                && ca.subnet == cb.subnet
                && w.hosts[ca.host].running()
                && w.hosts[cb.host].running()
                && comp[ca.host] == comp[cb.host]
            {
                pairs.push((a, b));
            }
        }
    }
    let max = w.checker.ping_pairs_max;
    if pairs.len() > max {
        let mut r = crate::rng::stream(w.seed, "probes", 0);
        let mut chosen = BTreeMap::new();
        while chosen.len() < max {
            let i = crate::rng::below(&mut r, pairs.len() as u64) as usize;
            chosen.insert(i, pairs[i]);
        }
        pairs = chosen.into_values().collect();
    }
    pairs.into_iter().map(|(from, to)| Probe { from, to, seq: None, ok: false, sent_at: Instant::ZERO }).collect()
}

const TICK: Duration = Duration::from_millis(100);
const PROBE_RETRY: Duration = Duration::from_millis(500);

/// One liveness poll; re-arms itself until every liveness check passed or ran out of budget.
pub fn liveness_tick(w: &mut World) {
    if w.checker.liveness_done {
        return;
    }
    let now = w.now;
    let start = *w.checker.started.get_or_insert(now);
    let elapsed = now - start;
    // Without the convergence check, pings are probed at once.
    if w.checker.converged_at.is_none() && w.checker.converge_budget.is_some() {
        match converged(w) {
            Ok(()) => w.checker.converged_at = Some(now),
            Err(e) => w.checker.last_problem = e,
        }
        if w.checker.converged_at.is_none() {
            if let Some(b) = w.checker.converge_budget.filter(|&b| elapsed > b) {
                let detail = format!("not converged {b:?} after the last fault: {}", w.checker.last_problem);
                w.checker.liveness_failures.push(Violation { at: now, check: "converge", detail });
                w.checker.liveness_done = true;
                return;
            }
            return w.push_liveness(now + TICK);
        }
    }
    if let Some(budget) = w.checker.ping_budget {
        if w.checker.probes.is_none() {
            let p = choose_probes(w);
            w.checker.probes = Some(p);
        }
        let due: Vec<(usize, u32, u32)> = w
            .checker
            .probes
            .as_ref()
            .expect("chosen")
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.ok && (p.seq.is_none() || now - p.sent_at >= PROBE_RETRY))
            .map(|(i, p)| (i, p.from, p.to))
            .collect();
        for (i, from, to) in due {
            w.probe(from, to, i);
        }
        let all_ok = w.checker.probes.as_ref().expect("chosen").iter().all(|p| p.ok);
        // The ping budget runs from convergence (or from the last fault, without that check).
        let since = now - w.checker.converged_at.unwrap_or(start);
        if all_ok {
            w.checker.pings_ok_at = Some(now);
        } else if since > budget {
            let probes = w.checker.probes.as_ref().expect("set");
            let failing: Vec<String> = probes
                .iter()
                .filter(|p| !p.ok)
                .take(5)
                .map(|p| format!("{} -> {}", w.containers[p.from as usize].name, w.containers[p.to as usize].name))
                .collect();
            let count = probes.iter().filter(|p| !p.ok).count();
            let detail = format!(
                "{count} of {} container pairs cannot ping {budget:?} after convergence, e.g. {}",
                probes.len(),
                failing.join(", ")
            );
            w.checker.liveness_failures.push(Violation { at: now, check: "ping", detail });
            w.checker.liveness_done = true;
            return;
        } else {
            return w.push_liveness(now + TICK);
        }
    }
    w.checker.liveness_done = true;
}
