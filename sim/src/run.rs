//! Running a scenario to its verdict.

use std::time::Instant as WallInstant;

use router_core::{Duration, Instant, Stats};
use serde::Serialize;

use crate::check::Violation;
use crate::scenario::Scenario;
use crate::stats::SimStats;
use crate::trace::Trace;
use crate::world::World;

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Scenario name.
    pub name: String,
    /// Seed.
    pub seed: u64,
    /// Hosts.
    pub hosts: usize,
    /// The first safety violation, if any.
    pub safety: Option<Violation>,
    /// Liveness failures.
    pub liveness: Vec<Violation>,
    /// Time from the last fault until views agreed and routes were shortest.
    pub converged_after: Option<Duration>,
    /// Time from the last fault until every probed pair pinged.
    pub pinged_after: Option<Duration>,
    /// When the last fault happened.
    pub faults_end: Duration,
    /// Virtual time simulated.
    pub simulated: Duration,
    /// Wall-clock time taken.
    pub wall: Duration,
    /// The trace fingerprint.
    pub trace_hash: u64,
    /// Events recorded in the trace.
    pub trace_events: u64,
    /// Simulator counters.
    pub sim: SimStats,
    /// Router counters summed over all hosts.
    pub routers: Stats,
    /// Frames followed by the safety checkers.
    pub frames_tracked: u64,
    /// Pings sent and answered by the workload and probes.
    pub pings: (u64, u64),
    /// Frames for a spoofed MAC that reached its spoofer.
    pub spoofed_deliveries: u64,
    /// The `checks.during` windows' pings.
    pub during: Vec<crate::check::WindowTally>,
    /// The `checks.link_changes` counts.
    pub link_changes: Vec<crate::check::LinkChangeTally>,
    /// What the routers running at the end sent, per router.
    pub volume: Volume,
    /// The address allocator, when the scenario runs it.
    pub ipam: Option<IpamSummary>,
}

/// The allocators of the routers running at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IpamSummary {
    /// Distinct rings held (by creator).
    pub rings: usize,
    /// Routers without a ring.
    pub without_ring: usize,
    /// Addresses leased.
    pub leases: usize,
    /// Counters summed over the routers.
    pub stats: router_core::ipam::IpamStats,
    /// Allocations refused or failed (no space in time).
    pub refused: u64,
    /// Routers that see a majority of the ring's voters with their state lost.
    pub quorum_lost: usize,
    /// `weave rmpeer` runs of the operator the scenario plays.
    pub operator_rmpeers: u64,
}

impl IpamSummary {
    fn of(w: &World) -> Option<IpamSummary> {
        w.scenario.ipam.as_ref()?;
        let mut sum = IpamSummary {
            refused: w.stats.ipam_refused,
            operator_rmpeers: w.stats.ipam_operator_rmpeers,
            ..IpamSummary::default()
        };
        let mut rings = std::collections::BTreeSet::new();
        for ipam in w.hosts.iter().filter_map(|h| h.router.as_ref()).filter_map(|r| r.ipam()) {
            match ipam.ring() {
                Some(r) => {
                    rings.insert(r.id);
                }
                None => sum.without_ring += 1,
            }
            sum.leases += ipam.leases().len();
            sum.quorum_lost += usize::from(ipam.quorum_lost());
            sum.stats.accumulate(&ipam.stats);
        }
        sum.rings = rings.len();
        Some(sum)
    }
}

/// Gossip and dials per router (over the routers running at the end of the run).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Volume {
    /// Mean gossip bytes sent.
    pub gossip_bytes_mean: u64,
    /// Most gossip bytes one router sent.
    pub gossip_bytes_max: u64,
    /// Mean connections dialled.
    pub dials_mean: u64,
    /// Most connections one router dialled.
    pub dials_max: u64,
}

impl Volume {
    fn of<'a>(stats: impl Iterator<Item = &'a Stats>) -> Volume {
        let (mut v, mut n, mut gossip, mut dials) = (Volume::default(), 0u64, 0u64, 0u64);
        for s in stats {
            n += 1;
            gossip += s.gossip_bytes_sent;
            dials += s.dials;
            v.gossip_bytes_max = v.gossip_bytes_max.max(s.gossip_bytes_sent);
            v.dials_max = v.dials_max.max(s.dials);
        }
        v.gossip_bytes_mean = gossip.checked_div(n).unwrap_or(0);
        v.dials_mean = dials.checked_div(n).unwrap_or(0);
        v
    }

    /// Violations of the scenario's bounds.
    fn check(&self, s: &Scenario, at: Instant) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(max) = s.checks.gossip_bytes_max.filter(|m| self.gossip_bytes_max > *m) {
            out.push(Violation {
                at,
                check: "volume",
                detail: format!("a router sent {} gossip bytes (at most {max} allowed)", self.gossip_bytes_max),
            });
        }
        if let Some(max) = s.checks.dials_max.filter(|m| self.dials_max > *m) {
            out.push(Violation {
                at,
                check: "volume",
                detail: format!("a router dialled {} connections (at most {max} allowed)", self.dials_max),
            });
        }
        out
    }
}

impl Outcome {
    /// The first failure, safety first.
    pub fn first_failure(&self) -> Option<&Violation> {
        self.safety.as_ref().or(self.liveness.first())
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.first_failure().is_none()
    }
}

/// Runs `s` with `seed` until its duration and its liveness checks are done.
pub fn run(s: &Scenario, seed: u64, trace: Trace) -> (Outcome, World) {
    run_inner(s, seed, trace, false)
}

/// As [`run`], keeping the timeline that [`crate::report::svg`] draws.
pub fn run_reported(s: &Scenario, seed: u64, trace: Trace) -> (Outcome, World) {
    run_inner(s, seed, trace, true)
}

fn run_inner(s: &Scenario, seed: u64, trace: Trace, timeline: bool) -> (Outcome, World) {
    let started = WallInstant::now();
    let mut w = World::new(s.clone(), seed, trace);
    let end = Instant::ZERO + s.duration.0;
    // Liveness may need time past the scenario's end; give it its budgets.
    let budgets =
        s.checks.converge_within.map_or(Duration::ZERO, |d| d.0) + s.checks.ping_within.map_or(Duration::ZERO, |d| d.0);
    let hard_end = (Instant::ZERO + s.faults_end() + budgets + Duration::from_secs(1)).max(end);
    if timeline {
        w.checker.timeline = Some(crate::report::Timeline::new(hard_end - Instant::ZERO));
    }
    w.run_until(end);
    while !w.checker.liveness_done && !w.checker.stopped() && w.next_time().is_some_and(|t| t <= hard_end) {
        w.step();
    }
    w.checker.finish_windows();
    let volume = Volume::of(w.hosts.iter().filter_map(|h| h.router.as_ref()).map(|r| r.stats()));
    let over = volume.check(s, w.now);
    w.checker.liveness_failures.extend(over);
    let _ = w.trace.finish();
    let faults_end = s.faults_end();
    let since = |t: Option<Instant>| t.map(|t| t - (Instant::ZERO + faults_end));
    let mut routers = Stats::default();
    for h in &w.hosts {
        if let Some(r) = &h.router {
            routers.accumulate(r.stats());
        }
    }
    let pings = w.containers.iter().fold((0, 0), |(s, a), c| (s + c.pings_sent, a + c.pings_answered));
    let o = Outcome {
        name: s.name.clone(),
        seed,
        hosts: w.hosts.len(),
        safety: w.checker.violations.first().cloned(),
        liveness: w.checker.liveness_failures.clone(),
        converged_after: since(w.checker.converged_at),
        pinged_after: since(w.checker.pings_ok_at),
        faults_end,
        simulated: w.now - Instant::ZERO,
        wall: started.elapsed(),
        trace_hash: w.trace.hash,
        trace_events: w.trace.count,
        sim: w.stats.clone(),
        routers,
        frames_tracked: w.checker.frames_tracked,
        pings,
        during: w.checker.windows.clone(),
        link_changes: w.checker.link_changes.clone(),
        volume,
        spoofed_deliveries: w.checker.spoofed_deliveries,
        ipam: IpamSummary::of(&w),
    };
    (o, w)
}
