//! `weave-sim`: run scenarios, check determinism, explore random fault schedules, benchmark.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use clap::{Parser, Subcommand};
use router_core::{DropReason, Duration, Instant};
use weave_sim::explore::shrink;
use weave_sim::scenario::{FaultAction, Scenario};
use weave_sim::{run, run_reported, Outcome, Trace, World};

#[path = "weave-sim/shard.rs"]
mod shard;

use shard::{cmd_merge, parse_shard, Summary, SummaryFailure};

/// The scenario run when no file is given: three hosts in a line, the middle one relaying,
/// a partition that heals.
const DEFAULT_SCENARIO: &str = include_str!("../../../scenarios/partition-heal.toml");

#[derive(Parser)]
#[command(name = "weave-sim", version, about = "Deterministic multi-host simulator for the weave router")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a scenario and prints every check's verdict.
    Run {
        /// Scenario file (TOML); without it, an embedded partition-and-heal scenario runs.
        file: Option<PathBuf>,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Writes every event as a JSON line.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Prints the outcome as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Gives every router a password (unless the scenario sets passwords): PAKE
        /// handshakes and sealed traffic.
        #[arg(long)]
        encrypt: bool,
        /// Writes a picture of the run (SVG): the topology, and a timeline of faults, link
        /// changes, convergence and the share of pings answered.
        #[arg(long, value_name = "FILE.svg")]
        report: Option<PathBuf>,
    },
    /// Runs a scenario twice and reports the first event where the runs differ.
    CheckDeterminism {
        /// Scenario file.
        file: Option<PathBuf>,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Runs a scenario under many seeds; shrinks the first failure into a regression file.
    Explore {
        /// Scenario file (with `[random_faults]` for random schedules).
        file: Option<PathBuf>,
        /// Number of seeds.
        #[arg(long, default_value_t = 100)]
        runs: u64,
        /// Parallel runs.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the shrunk scenario.
        #[arg(long, default_value = "explore-failures")]
        out: PathBuf,
        /// Gives every router a password (unless the scenario sets passwords); a shrunk
        /// failure keeps it.
        #[arg(long)]
        encrypt: bool,
        /// Runs only shard I of N (0-based): seed number k of the range when k mod N = I. Also
        /// read from WEAVE_SIM_SHARD ("I/N"), or from JOB_COMPLETION_INDEX (a Kubernetes
        /// indexed Job) with WEAVE_SIM_SHARDS=N.
        #[arg(long)]
        shard: Option<String>,
        /// Writes what this run covered and found as JSON, for `weave-sim merge`.
        #[arg(long)]
        summary: Option<PathBuf>,
    },
    /// Merges the summaries of an exploration's shards: checks that they cover its seeds
    /// exactly once, and reports the failures of all.
    Merge {
        /// Summary files written by `explore --summary`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Measures events per second and simulated-to-wall time at 100, 1,000 and 10,000 peers.
    Bench {
        /// Peer counts to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10000])]
        peers: Vec<usize>,
        /// Simulated seconds per size (default: 3600 at 100 peers, 300 at 1,000, 60 above).
        #[arg(long)]
        seconds: Option<u64>,
    },
}

fn load(file: &Option<PathBuf>) -> Result<(Scenario, String), String> {
    let (text, label) = match file {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_SCENARIO.to_string(), "(embedded default: scenarios/partition-heal.toml)".into()),
    };
    let s = Scenario::parse(&text).map_err(|e| format!("{label}: {e}"))?;
    Ok((s, label))
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn print_outcome(o: &Outcome, label: &str, replay: &str) {
    println!("scenario  {} — {label}", o.name);
    let ratio = o.simulated.as_secs_f64() / o.wall.as_secs_f64().max(1e-9);
    println!(
        "seed      {}   hosts {}   simulated {} in {} wall ({ratio:.0}x real time)   events {}",
        o.seed,
        o.hosts,
        secs(o.simulated),
        secs(o.wall),
        o.sim.events
    );
    println!("checks");
    match &o.safety {
        None => println!("  PASS  safety: no loops, no duplicate or stray deliveries, subnets isolated, every frame accounted ({} frames followed)", o.frames_tracked),
        Some(v) => println!("  FAIL  safety [{}] at {}: {}", v.check, v.at, v.detail),
    }
    let fe = secs(o.faults_end);
    for v in &o.liveness {
        println!("  FAIL  {} at {}: {}", v.check, v.at, v.detail);
    }
    if let Some(d) = o.converged_after {
        println!("  PASS  converge: views agree and routes are shortest {} after the last fault (at {fe})", secs(d));
    }
    if let Some(d) = o.pinged_after {
        println!("  PASS  ping: every probed same-subnet pair answers {} after the last fault", secs(d));
    }
    for w in o.during.iter().filter(|w| w.sent > 0 && w.answered as f64 >= w.min * w.sent as f64) {
        println!(
            "  PASS  pings-during: {} of {} workload pings between {} and {} answered (at least {:.0} % needed)",
            w.answered,
            w.sent,
            w.from,
            w.to,
            w.min * 100.0
        );
    }
    for t in o.link_changes.iter().filter(|t| t.changes <= t.max) {
        println!(
            "  PASS  link-changes: hosts {} and {}: {} changes (at most {} allowed)",
            t.hosts.0, t.hosts.1, t.changes, t.max
        );
    }
    let r = &o.routers;
    println!(
        "routers   captured {} injected {} sent {} flooded {} relayed {}   datagrams {}   gossip {} B in {} updates",
        r.frames_captured,
        r.frames_injected,
        r.frames_sent,
        r.frames_flooded,
        r.frames_relayed,
        r.datagrams_sent,
        r.gossip_bytes_sent,
        r.gossip_updates_sent
    );
    let v = &o.volume;
    println!(
        "volume    per router: gossip {} B mean, {} B most; dials {} mean, {} most",
        v.gossip_bytes_mean, v.gossip_bytes_max, v.dials_mean, v.dials_max
    );
    if let Some(i) = &o.ipam {
        println!(
            "ipam      {} ring(s), {} router(s) without; {} leased; {} handed out, {} freed, {} refused; {} blocks given, {} reclaimed; {} conflicts",
            i.rings,
            i.without_ring,
            i.leases,
            i.stats.allocated,
            i.stats.freed,
            i.refused,
            i.stats.blocks_given,
            i.stats.blocks_reclaimed,
            i.stats.conflicts
        );
        if i.operator_rmpeers > 0 {
            println!(
                "ipam      the operator ran weave rmpeer {} time(s) for voters whose state was lost",
                i.operator_rmpeers
            );
        }
        if i.quorum_lost > 0 {
            println!(
                "ipam      {} router(s) see a majority of the voters with their state lost: no new block can be put to use (weave rmpeer)",
                i.quorum_lost
            );
        }
    }
    if r.password_mismatches > 0 {
        println!("handshakes refused for a password mismatch: {}", r.password_mismatches);
    }
    if r.icmp_too_big_sent + r.frames_fragmented + r.pmtu_reports > 0 {
        println!(
            "path MTU  {} probes, {} reports from the kernel, {} frames answered with ICMP, {} fragmented",
            r.pmtu_probes_sent, r.pmtu_reports, r.icmp_too_big_sent, r.frames_fragmented
        );
    }
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|&&d| r.drops.get(d) > 0)
        .map(|&d| format!("{} {}", d.as_str(), r.drops.get(d)))
        .collect();
    println!("drops     routers: {}", if drops.is_empty() { "none".into() } else { drops.join(", ") });
    let net: Vec<String> = o
        .sim
        .net_drops
        .iter()
        .map(|(k, v)| format!("{} {v}", serde_json::to_string(k).unwrap_or_default().trim_matches('"')))
        .collect();
    println!(
        "          network: {}   duplicated {}",
        if net.is_empty() { "none".into() } else { net.join(", ") },
        o.sim.duplicated
    );
    println!("pings     {} sent, {} answered", o.pings.0, o.pings.1);
    if o.sim.hostile_frames > 0 {
        println!(
            "hostile   {} frames sent by misbehaving containers; {} frames for a spoofed MAC reached its spoofer",
            o.sim.hostile_frames, o.spoofed_deliveries
        );
    }
    println!("trace     {:016x} ({} events)", o.trace_hash, o.trace_events);
    if o.passed() {
        println!("result    PASS");
    } else {
        println!("result    FAIL — replay with: {replay}");
    }
}

fn replay_cmd(file: &Option<PathBuf>, seed: u64, encrypt: bool) -> String {
    let flag = if encrypt { " --encrypt" } else { "" };
    match file {
        Some(p) => format!("weave-sim run {} --seed {seed}{flag}", p.display()),
        None => format!("weave-sim run --seed {seed}{flag}"),
    }
}

fn cmd_run(
    file: Option<PathBuf>,
    seed: Option<u64>,
    trace: Option<PathBuf>,
    json: bool,
    encrypt: bool,
    report: Option<PathBuf>,
) -> Result<bool, String> {
    let (mut s, label) = load(&file)?;
    if encrypt {
        s.encrypt();
    }
    let seed = seed.unwrap_or(s.seed);
    let t = match &trace {
        Some(p) => Trace::new().with_file(File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?),
        None => Trace::new(),
    };
    let o = match &report {
        None => run(&s, seed, t).0,
        Some(path) => {
            let (o, mut w) = run_reported(&s, seed, t);
            std::fs::write(path, weave_sim::report::svg(&o, &mut w))
                .map_err(|e| format!("cannot write the report {}: {e}", path.display()))?;
            o
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&o).expect("outcomes serialise"));
    } else {
        print_outcome(&o, &label, &replay_cmd(&file, seed, encrypt));
    }
    Ok(o.passed())
}

fn cmd_determinism(file: Option<PathBuf>, seed: Option<u64>) -> Result<bool, String> {
    let (s, label) = load(&file)?;
    let seed = seed.unwrap_or(s.seed);
    let (a, wa) = run(&s, seed, Trace::new().with_hashes());
    let (b, wb) = run(&s, seed, Trace::new().with_hashes());
    let (ha, hb) = (wa.trace.hashes().unwrap_or_default(), wb.trace.hashes().unwrap_or_default());
    match ha.iter().zip(hb).position(|(x, y)| x != y).or((ha.len() != hb.len()).then(|| ha.len().min(hb.len()))) {
        None => {
            println!(
                "{label}: deterministic — two runs with seed {seed} gave the same {} events, trace {:016x}",
                a.trace_events, a.trace_hash
            );
            Ok(true)
        }
        Some(k) => {
            let describe = |_: ()| {
                let (_, w) = run(&s, seed, Trace::new().describing(k as u64));
                w.trace.described.unwrap_or_else(|| "(past the end of the run)".into())
            };
            println!(
                "{label}: NOT deterministic — runs differ first at event {k} of {}/{}",
                a.trace_events, b.trace_events
            );
            println!("  run 1: {}", describe(()));
            println!("  run 2: {}", describe(()));
            Ok(false)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn cmd_explore(
    file: Option<PathBuf>,
    runs: u64,
    jobs: usize,
    first: u64,
    out: PathBuf,
    encrypt: bool,
    (shard, shards): (u64, u64),
    summary: Option<PathBuf>,
) -> Result<bool, String> {
    let (mut s, label) = load(&file)?;
    if encrypt {
        s.encrypt();
    }
    let seeds: Vec<u64> = (0..runs).filter(|k| k % shards == shard).map(|k| first + k).collect();
    let bar = indicatif::ProgressBar::new(seeds.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {msg}").expect("valid template"),
    );
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                let (o, _) = run(&s, seed, Trace::new());
                if !o.passed() {
                    let mut f = failures.lock().expect("no panics while held");
                    f.push(o);
                    bar.set_message(format!("{} failing", f.len()));
                }
                bar.inc(1);
            });
        }
    });
    bar.finish();
    let mut failures = failures.into_inner().expect("threads joined");
    failures.sort_by_key(|o| o.seed);
    let part = if shards > 1 { format!(" (shard {shard}/{shards})") } else { String::new() };
    println!("{label}: {} of {} seeds failed{part}", failures.len(), seeds.len());
    if let Some(path) = summary {
        let sum = Summary {
            scenario: s.name.clone(),
            encrypted: encrypt,
            first,
            runs,
            shard: (shard, shards),
            seeds: seeds.clone(),
            failures: failures
                .iter()
                .map(|o| {
                    let v = o.first_failure().expect("failed");
                    SummaryFailure {
                        seed: o.seed,
                        check: v.check.into(),
                        at_us: v.at.as_micros(),
                        detail: v.detail.clone(),
                    }
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&sum).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let Some(f) = failures.first() else { return Ok(true) };
    let v = f.first_failure().expect("failed");
    println!("first failure: seed {} [{}] at {}: {}", f.seed, v.check, v.at, v.detail);
    println!("shrinking…");
    let small = shrink(&s, f.seed, f, 60);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let slug: String = s.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let path = out.join(format!("{slug}-seed{}.toml", f.seed));
    let text = format!("# Shrunk by `weave-sim explore` from {label}, seed {}.\n{}", f.seed, small.to_toml());
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!(
        "wrote {} ({} hosts, {} faults); replay with: weave-sim run {} --seed {}",
        path.display(),
        small.host_names().len(),
        small.faults.len(),
        path.display(),
        f.seed
    );
    Ok(false)
}

/// A memory figure of this process from /proc/self/status (`VmHWM` peak, `VmRSS` now), in MiB.
fn rss_mib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peers joining per second in a bench network above 1,000 peers.
const JOIN_RATE: usize = 100;
/// Pinging containers in a bench network above 1,000 peers.
const PINGERS: usize = 1000;

/// The bench network: `peers` hosts on a random underlay of degree 4, one container each,
/// pinging a random container every 10 s. Up to 1,000 peers everything starts at once and
/// every container pings. Above that, a network grows the way a large one does: peers join at
/// [`JOIN_RATE`] a second, routers compute routes when a frame needs them
/// (`lazy_routes`), and [`PINGERS`] containers spread over the hosts ping (every router
/// still learns their MACs from the ARP floods) once the network has formed. The second
/// value is the warm-up.
fn bench_scenario(peers: usize, seconds: u64) -> (Scenario, Duration) {
    let large = peers > 1000;
    let spread = if large { (peers / JOIN_RATE) as u64 } else { 0 };
    let active = if large { PINGERS as f64 / peers as f64 } else { 1.0 };
    let warmup = spread + 30;
    let text = format!(
        r#"
name = "bench {peers} peers"
duration = "{seconds}s"
[hosts]
count = {peers}
start_spread = "{spread}s"
[underlay]
shape = "random"
degree = 4
[router]
connect = "underlay"
tcp_timeout = "60s"
lazy_routes = {large}
backoff_max = "{backoff}s"
[workload]
containers_per_host = 1
subnets = ["10.0.0.0/8"]
ping_interval = "10s"
active = {active:?}
start = "{start}s"
[checks]
safety = false
"#,
        backoff = if large { 5 } else { 60 },
        // Small networks ping from the start, as before; large ones once formed.
        start = if large { warmup } else { 0 },
    );
    let mut s = Scenario::parse(&text).expect("bench scenario is valid");
    s.checks.converge_within = None;
    s.checks.ping_within = None;
    (s, Duration::from_secs(warmup))
}

fn cmd_bench(peers: Vec<usize>, seconds: Option<u64>) -> Result<bool, String> {
    println!(
        "{:>7} {:>10} {:>12} {:>12} {:>14} {:>10} {:>10} {:>14}",
        "peers", "simulated", "wall", "events/s", "sim/wall", "peak MiB", "now MiB", "forming (wall)"
    );
    for n in peers {
        let secs_default = match n {
            0..=100 => 3600,
            101..=1000 => 300,
            _ => 60,
        };
        let (s, warmup) = bench_scenario(n, seconds.unwrap_or(secs_default));
        // Warm up: let the network form before measuring steady state.
        let mut w = World::new(s.clone(), 1, Trace::new());
        let warm = Instant::ZERO + warmup;
        let t0 = std::time::Instant::now();
        w.run_until(warm);
        let formed = t0.elapsed().as_secs_f64();
        eprintln!(
            "{n} peers: formed in {formed:.0} s of wall time; measuring {} s of steady state",
            s.duration.0.as_secs()
        );
        hold_for_profiler();
        let e0 = w.stats.events;
        let k0 = w.stats.kinds;
        let t0 = std::time::Instant::now();
        measure(&mut w, warm + s.duration.0);
        let wall = t0.elapsed().as_secs_f64();
        let events = w.stats.events - e0;
        println!(
            "{n:>7} {:>9}s {:>11.2}s {:>12.0} {:>14} {:>10.0} {:>10.0} {:>5}s ({formed:.0}s)",
            s.duration.0.as_secs(),
            wall,
            events as f64 / wall,
            times_real(s.duration.0.as_secs_f64() / wall),
            rss_mib("VmHWM:").unwrap_or(0.0),
            rss_mib("VmRSS:").unwrap_or(0.0),
            warmup.as_secs()
        );
        let (k, secs) = (w.stats.kinds, s.duration.0.as_secs_f64());
        let rate = |a: u64, b: u64| (a - b) as f64 / secs;
        println!(
            "{:>7} events per simulated second: {:.0} datagrams, {:.0} timers, {:.0} TCP, {:.0} container traffic, {:.0} other; {:.0} superseded wake-ups discarded",
            "",
            rate(k.udp, k0.udp),
            rate(k.timers, k0.timers),
            rate(k.tcp, k0.tcp),
            rate(k.work, k0.work),
            rate(k.other, k0.other),
            rate(k.superseded, k0.superseded)
        );
        if n == 1000 {
            gossip_per_link_change(&mut w);
        }
    }
    Ok(true)
}

/// With `WEAVE_SIM_BENCH_HOLD=SECS`, waits that long before measuring, after saying so on
/// stderr: time to switch a profiler's instrumentation on (`callgrind_control -i on`), so
/// that it counts exactly the measured part, without running the forming under it.
fn hold_for_profiler() {
    let Some(v) = std::env::var_os("WEAVE_SIM_BENCH_HOLD") else { return };
    match v.to_str().and_then(|v| v.parse::<f64>().ok()).filter(|s| (0.0..=3600.0).contains(s)) {
        Some(secs) => {
            eprintln!("holding {secs} s before measuring (WEAVE_SIM_BENCH_HOLD)");
            std::thread::sleep(Duration::from_secs_f64(secs));
        }
        None => {
            eprintln!("WEAVE_SIM_BENCH_HOLD={v:?} ignored: give seconds from 0 to 3600, e.g. WEAVE_SIM_BENCH_HOLD=3")
        }
    }
}

/// Simulated-to-wall time as `123x`, with two decimals below 10 (slower than real time
/// shows as `0.21x`, not `0x`).
fn times_real(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.2}x")
    } else {
        format!("{r:.0}x")
    }
}

/// Runs the measured part of a bench: its own function, so that a profiler can count it
/// alone (`valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measure*'`).
#[inline(never)]
fn measure(w: &mut World, until: Instant) {
    w.run_until(until);
}

/// Cuts one link in a settled network and reports the gossip it costs.
fn gossip_per_link_change(w: &mut World) {
    let total =
        |w: &World| w.hosts.iter().filter_map(|h| h.router.as_ref()).map(|r| r.stats().gossip_bytes_sent).sum::<u64>();
    let degree = |w: &World, h: usize| w.net.neighbours(h as u32).len();
    let a = 0usize;
    let b = w.net.neighbours(0)[0] as usize;
    let (na, nb) = (w.hosts[a].name.clone(), w.hosts[b].name.clone());
    // Measure over a window without the link change, then one with it.
    let window = Duration::from_secs(10);
    let t = w.now;
    let g0 = total(w);
    w.run_until(t + window);
    let quiet = total(w) - g0;
    let g1 = total(w);
    w.apply(FaultAction::Cut { a: na, b: nb });
    let t = w.now;
    w.run_until(t + window);
    let change = (total(w) - g1).saturating_sub(quiet);
    let links: usize = (0..w.hosts.len()).map(|h| degree(w, h)).sum::<usize>() / 2;
    println!(
        "gossip per link change (1000 peers, {links} links, changed peers' degrees {} and {}): {change} bytes in total, {:.1} bytes per link",
        degree(w, a),
        degree(w, b),
        change as f64 / links as f64
    );
}

/// A reader that stops early (`weave-sim bench | head`) closes our stdout: printing then
/// fails with a broken pipe, which `println!` turns into a panic. The reader has what it
/// wanted; end quietly, as a filter killed by SIGPIPE would, rather than with a backtrace.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The glibc tunable that has `malloc` back its heap with transparent huge pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HUGE_PAGES: &str = "glibc.malloc.hugetlb=1";

/// Restarts the program once with [`HUGE_PAGES`] set, unless the environment already says
/// how malloc should treat huge pages or `WEAVE_SIM_HUGE_PAGES=0` asks not to.
///
/// Thousands of routers' tables are read at random: with 4 KiB pages nearly every such
/// read also misses the TLB, and huge pages take a fifth off a 1,000-peer run's wall
/// time for 1 % more memory. glibc reads its tunables only when a program starts, hence
/// the restart. (Under valgrind, which does not follow `exec` by default, set
/// `WEAVE_SIM_HUGE_PAGES=0`.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn with_huge_pages() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("WEAVE_SIM_HUGE_PAGES").is_some_and(|v| v == "0") {
        return;
    }
    let tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.to_string_lossy().contains("glibc.malloc.hugetlb") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut set = tunables;
    if !set.is_empty() {
        set.push(":");
    }
    set.push(HUGE_PAGES);
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    // Returns only if the restart failed: then carry on with small pages.
    let _ = cmd.args(args).env("GLIBC_TUNABLES", set).exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn with_huge_pages() {}

fn main() -> ExitCode {
    with_huge_pages();
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run { file, seed, trace, json, encrypt, report } => cmd_run(file, seed, trace, json, encrypt, report),
        Cmd::CheckDeterminism { file, seed } => cmd_determinism(file, seed),
        Cmd::Explore { file, runs, jobs, seed, out, encrypt, shard, summary } => {
            parse_shard(shard).and_then(|shard| cmd_explore(file, runs, jobs, seed, out, encrypt, shard, summary))
        }
        Cmd::Merge { files } => cmd_merge(&files),
        Cmd::Bench { peers, seconds } => cmd_bench(peers, seconds),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weave-sim: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::times_real;

    #[test]
    fn a_run_slower_than_real_time_keeps_its_decimals() {
        assert_eq!(times_real(60.0 / 289.8), "0.21x");
        assert_eq!(times_real(2.5), "2.50x");
        assert_eq!(times_real(7384.4), "7384x");
    }
}
