//! Checkers. Safety holds after every event; liveness must hold within the scenario's budget
//! once the faults stop.

use std::collections::{BTreeMap, VecDeque};

use router_core::wire::datagram::{Datagram, Kind};
use router_core::{Duration, Instant, Mac, PeerName, Stats};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::lan::{frame_id, Container, Received};
use crate::scenario::Scenario;
use crate::world::{peer_name, World};

/// A broken rule.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// When.
    pub at: Instant,
    /// Which check.
    pub check: &'static str,
    /// What happened.
    pub detail: String,
}

#[derive(Debug, Default)]
struct Track {
    born: Instant,
    peers: Vec<u32>,
    containers: Vec<u64>,
    flooded: bool,
    duplicated: bool,
}

#[derive(Debug, Clone)]
struct Probe {
    from: u32,
    to: u32,
    seq: Option<u16>,
    ok: bool,
    sent_at: Instant,
}

/// The checkers' state.
#[derive(Debug)]
pub struct Checker {
    /// What the picture of the run needs (`--report`); off unless asked for.
    pub timeline: Option<crate::report::Timeline>,
    safety: bool,
    hop_limit: u8,
    frames: FxHashMap<u64, Track>,
    /// Safety violations (the run stops at the first).
    pub violations: Vec<Violation>,
    converge_budget: Option<Duration>,
    ping_budget: Option<Duration>,
    ping_pairs_max: usize,
    started: Option<Instant>,
    /// When views agreed and routes were shortest, once the faults stopped.
    pub converged_at: Option<Instant>,
    /// When every probed pair had pinged, once the faults stopped.
    pub pings_ok_at: Option<Instant>,
    probes: Option<Vec<Probe>>,
    probe_of: FxHashMap<(u32, u16), usize>,
    /// Whether liveness checking finished (passed or failed).
    pub liveness_done: bool,
    /// Liveness failures.
    pub liveness_failures: Vec<Violation>,
    last_problem: String,
    /// Frames checked.
    pub frames_tracked: u64,
    /// Frames for a spoofed MAC that reached its spoofer.
    pub spoofed_deliveries: u64,
    /// Containers that misbehave, and the MAC each may receive as its own besides its
    /// own (the one it spoofs).
    hostile: Vec<bool>,
    spoofs: Vec<Option<Mac>>,
    /// Containers whose MAC another spoofs.
    victims: Vec<bool>,
    /// The `during` windows' pings: (from, to, least fraction answered, sent, answered).
    pub windows: Vec<WindowTally>,
    /// Per `checks.link_changes` entry: its hosts (by index), window, bound and count.
    pub link_changes: Vec<LinkChangeTally>,
    /// Workload pings counted in a window and not yet answered: (container, seq) → (window,
    /// sent at).
    window_pings: FxHashMap<(u32, u16), (usize, Instant)>,
}

/// The workload's pings in one `checks.during` window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowTally {
    /// Start.
    pub from: Instant,
    /// End.
    pub to: Instant,
    /// The least fraction that must be answered.
    pub min: f64,
    /// Pings sent within the window by and to bystanders (neither hostile nor a victim).
    pub sent: u64,
    /// Of those, answered within a second.
    pub answered: u64,
}

/// Changes of one link, as `checks.link_changes` bounds them.
#[derive(Debug, Clone, Serialize)]
pub struct LinkChangeTally {
    /// The ends (host indices).
    pub hosts: (u32, u32),
    /// The window.
    pub from: Instant,
    /// The window's end (none: the run's).
    pub to: Option<Instant>,
    /// Most changes allowed.
    pub max: u32,
    /// Changes seen.
    pub changes: u32,
}

/// How long a window's ping may take to be answered.
const WINDOW_ANSWER: Duration = Duration::from_secs(1);

impl Checker {
    /// Checkers for a scenario.
    pub fn new(s: &Scenario) -> Self {
        let skip = |c: &str| s.checks.skip.iter().any(|x| x == c);
        Checker {
            timeline: None,
            safety: s.checks.safety && !s.checks.skip.iter().any(|c| c == "safety"),
            hop_limit: s.router.hop_limit.unwrap_or(64),
            frames: FxHashMap::default(),
            violations: Vec::new(),
            converge_budget: s.checks.converge_within.map(|d| d.0).filter(|_| !skip("converge")),
            ping_budget: s.checks.ping_within.map(|d| d.0).filter(|_| !skip("ping")),
            ping_pairs_max: s.checks.ping_pairs_max,
            started: None,
            converged_at: None,
            pings_ok_at: None,
            probes: None,
            probe_of: FxHashMap::default(),
            liveness_done: (s.checks.converge_within.is_none() || skip("converge"))
                && (s.checks.ping_within.is_none() || skip("ping")),
            liveness_failures: Vec::new(),
            last_problem: String::new(),
            frames_tracked: 0,
            spoofed_deliveries: 0,
            hostile: Vec::new(),
            spoofs: Vec::new(),
            victims: Vec::new(),
            windows: s
                .checks
                .during
                .iter()
                .map(|w| WindowTally {
                    from: Instant::ZERO + w.from.0,
                    to: Instant::ZERO + w.to.0,
                    min: w.pings_answered_min,
                    sent: 0,
                    answered: 0,
                })
                .collect(),
            window_pings: FxHashMap::default(),
            link_changes: {
                let names = s.host_names();
                let idx = |h: &str| names.iter().position(|n| n == h).expect("validated") as u32;
                s.checks
                    .link_changes
                    .iter()
                    .map(|l| LinkChangeTally {
                        hosts: (idx(&l.a), idx(&l.b)),
                        from: Instant::ZERO + l.from.0,
                        to: l.to.map(|t| Instant::ZERO + t.0),
                        max: l.max,
                        changes: 0,
                    })
                    .collect()
            },
        }
    }

    /// Host `h`'s router says its link with host `other` was established or lost.
    pub(crate) fn on_link_change(&mut self, now: Instant, h: u32, other: u32, up: bool) {
        if let Some(t) = &mut self.timeline {
            t.link(now, up);
        }
        for t in &mut self.link_changes {
            let ours = t.hosts == (h, other);
            if ours && t.from <= now && t.to.is_none_or(|to| now < to) {
                t.changes += 1;
            }
        }
    }

    /// Which containers misbehave, which MAC each spoofs, and whose MAC is spoofed (by
    /// container index).
    pub(crate) fn set_roles(&mut self, hostile: Vec<bool>, spoofs: Vec<Option<Mac>>, victims: Vec<bool>) {
        self.hostile = hostile;
        self.spoofs = spoofs;
        self.victims = victims;
    }

    fn bystander(&self, c: u32) -> bool {
        let c = c as usize;
        !self.hostile.get(c).copied().unwrap_or(false) && !self.victims.get(c).copied().unwrap_or(false)
    }

    /// Container `c` sent workload ping `seq` to container `to`.
    pub(crate) fn on_workload_ping(&mut self, now: Instant, c: u32, to: u32, seq: u16) {
        if !(self.bystander(c) && self.bystander(to)) {
            return;
        }
        if let Some(t) = &mut self.timeline {
            t.ping_sent(now, c, seq);
        }
        if let Some(w) = self.windows.iter().position(|w| w.from <= now && now < w.to) {
            self.windows[w].sent += 1;
            self.window_pings.insert((c, seq), (w, now));
        }
    }

    /// Judges the `during` windows (each must have seen pings, and enough answered) and the
    /// bounds on link changes.
    pub fn finish_windows(&mut self) {
        for t in &self.link_changes {
            if t.changes > t.max {
                self.liveness_failures.push(Violation {
                    at: t.to.unwrap_or(t.from),
                    check: "link-changes",
                    detail: format!(
                        "the link between hosts {} and {} changed {} times (at most {} allowed)",
                        t.hosts.0, t.hosts.1, t.changes, t.max
                    ),
                });
            }
        }
        for w in &self.windows {
            let ok = w.sent > 0 && w.answered as f64 >= w.min * w.sent as f64;
            if !ok {
                self.liveness_failures.push(Violation {
                    at: w.to,
                    check: "pings-during",
                    detail: format!(
                        "between {} and {}: {} of {} workload pings answered (at least {:.0} % needed)",
                        w.from,
                        w.to,
                        w.answered,
                        w.sent,
                        w.min * 100.0
                    ),
                });
            }
        }
    }

    /// Whether the safety rules are checked (the scenario's `checks.safety`).
    pub fn safety(&self) -> bool {
        self.safety
    }

    /// The run must stop: a safety rule broke.
    pub fn stopped(&self) -> bool {
        !self.violations.is_empty()
    }

    fn violate(&mut self, at: Instant, check: &'static str, detail: String) {
        if self.violations.is_empty() {
            self.violations.push(Violation { at, check, detail });
        }
    }

    fn track(&mut self, now: Instant, id: u64) -> &mut Track {
        let tracked = &mut self.frames_tracked;
        self.frames.entry(id).or_insert_with(|| {
            *tracked += 1;
            Track { born: now, ..Track::default() }
        })
    }

    fn frame_ids(bytes: &[u8]) -> Option<(Datagram<&[u8]>, Vec<u64>)> {
        let d = Datagram::new_checked(bytes).ok()?;
        if d.kind() != Kind::Frames {
            return None;
        }
        let ids = d.frames().ok()?.filter_map(frame_id).collect();
        Some((d, ids))
    }

    /// A router sends a datagram.
    pub fn on_send(&mut self, now: Instant, h: u32, bytes: &[u8]) {
        if !self.safety {
            return;
        }
        let Some((d, ids)) = Self::frame_ids(bytes) else { return };
        if d.hop_limit() == 0 || d.hop_limit() > self.hop_limit {
            self.violate(now, "hop-limit", format!("host {h} sent frames with hop limit {}", d.hop_limit()));
        }
        if d.dst() == PeerName::BROADCAST {
            for id in ids {
                self.track(now, id).flooded = true;
            }
        }
    }

    /// A router took a datagram in (injected or relayed some of its frames).
    pub fn on_pass(&mut self, now: Instant, h: u32, bytes: &[u8]) {
        if !self.safety {
            return;
        }
        let Some((d, ids)) = Self::frame_ids(bytes) else { return };
        if d.hop_limit() == 0 {
            self.violate(now, "hop-limit", format!("host {h} received frames with no hops left"));
        }
        for id in ids {
            let t = self.track(now, id);
            let twice = t.peers.contains(&h) && !t.duplicated;
            t.peers.push(h);
            if twice {
                self.violate(now, "no-loops", format!("frame {id} reached host {h} twice"));
            }
        }
    }

    /// The network duplicated a datagram: its frames may legitimately arrive twice.
    pub fn on_duplicate(&mut self, now: Instant, bytes: &[u8]) {
        if !self.safety {
            return;
        }
        if let Some((_, ids)) = Self::frame_ids(bytes) {
            for id in ids {
                self.track(now, id).duplicated = true;
            }
        }
    }

    /// A bridge flooded a unicast frame.
    pub fn on_flood(&mut self, now: Instant, frame: &[u8]) {
        if !self.safety {
            return;
        }
        if let Some(id) = frame_id(frame) {
            self.track(now, id).flooded = true;
        }
    }

    /// A frame reaches a container.
    pub fn on_container(&mut self, now: Instant, c: u32, ct: &Container, frame: &[u8], r: Received) {
        if let Received::Ip { echo_reply: Some(seq), .. } = r {
            if let Some(t) = &mut self.timeline {
                t.ping_answered(now, c, seq);
            }
            if let Some((w, at)) = self.window_pings.remove(&(c, seq)) {
                if now <= at + WINDOW_ANSWER {
                    self.windows[w].answered += 1;
                }
            }
            if let Some(&i) = self.probe_of.get(&(c, seq)) {
                if let Some(p) = self.probes.as_mut().and_then(|p| p.get_mut(i)) {
                    p.ok = true;
                }
            }
        }
        if !self.safety || r == Received::TooBig {
            return;
        }
        let Some(id) = frame_id(frame) else { return };
        // A spoofer receives what is sent to the MAC it spoofs: the network cannot tell them
        // apart.
        let spoofed = self.spoofs.get(c as usize).copied().flatten();
        let to_spoofed = spoofed.is_some_and(|m| frame[0..6] == m.0);
        self.spoofed_deliveries += u64::from(to_spoofed);
        let dst_is_mine = frame[0..6] == ct.mac.0 || to_spoofed;
        let unicast = frame[0] & 1 == 0;
        // A container that moved may meet a flood again at its new host: that is physics.
        let who = (u64::from(ct.moves) << 32) | u64::from(c);
        let t = self.track(now, id);
        let twice = t.containers.contains(&who) && !t.duplicated;
        t.containers.push(who);
        let stray = unicast && !dst_is_mine && !t.flooded;
        if twice {
            self.violate(now, "deliver-once", format!("frame {id} reached container {} twice", ct.name));
        }
        if stray {
            self.violate(
                now,
                "right-container",
                format!("unicast frame {id} for another MAC reached {} without a flood", ct.name),
            );
        }
        if r == Received::ForeignIp && dst_is_mine {
            self.violate(
                now,
                "subnet-isolation",
                format!("{} received an IP packet from outside {}/{}", ct.name, ct.subnet.addr, ct.subnet.prefix),
            );
        }
    }

    /// Every captured frame is sent, flooded, left to the bridge, or dropped with a reason.
    pub fn on_capture_accounting(&mut self, now: Instant, h: u32, before: &Stats, after: &Stats) {
        let acc = |s: &Stats| {
            s.frames_local
                + s.frames_sent
                + s.frames_flooded
                + s.icmp_too_big_sent
                + s.frames_fragmented
                + s.drops.total()
        };
        if self.safety && acc(after) < acc(before) + 1 {
            self.violate(now, "accounted", format!("host {h} captured a frame and neither forwarded nor counted it"));
        }
    }

    /// Every frame of a received datagram is injected, relayed, or dropped with a reason.
    pub fn on_datagram_accounting(&mut self, now: Instant, h: u32, n: u64, before: &Stats, after: &Stats) {
        let acc = |s: &Stats| s.frames_injected + s.frames_relayed + s.drops.total();
        if self.safety && n > 0 && acc(after) < acc(before) + n {
            self.violate(now, "accounted", format!("host {h} received {n} frames and did not account for all of them"));
        }
    }

    /// Probe `i` is about to send ping `seq` from container `c`.
    pub(crate) fn register_probe(&mut self, now: Instant, c: u32, seq: u16, i: usize) {
        if let Some(p) = self.probes.as_mut().and_then(|p| p.get_mut(i)) {
            p.seq = Some(seq);
            p.sent_at = now;
        }
        self.probe_of.insert((c, seq), i);
    }

    /// Forgets frames old enough to be gone from the network.
    pub fn prune(&mut self, now: Instant) {
        let horizon = now.as_micros().saturating_sub(10_000_000);
        self.frames.retain(|_, t| t.born.as_micros() >= horizon);
    }
}

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
