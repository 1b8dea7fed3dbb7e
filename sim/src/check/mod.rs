//! Checkers. Safety holds after every event; liveness must hold within the scenario's budget
//! once the faults stop.

use router_core::wire::datagram::{Datagram, Kind};
use router_core::{Duration, Instant, Mac, PeerName, Stats};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::lan::{frame_id, Container, Received};
use crate::scenario::Scenario;

mod liveness;
pub use liveness::{converged, liveness_tick};

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

    /// Two live targets hold one address, or a router leases in a block it does not own.
    pub(crate) fn on_ipam_conflict(&mut self, now: Instant, detail: String) {
        if self.safety {
            self.violate(now, "ipam-unique", detail);
        }
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
