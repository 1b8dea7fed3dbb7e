//! Sharded exploration: which seeds a shard runs, the summary it writes, and `merge`.

use std::path::PathBuf;

/// Shard `I/N` from the flag, or the environment (see `explore --shard`); `(0, 1)` when none.
pub(super) fn parse_shard(flag: Option<String>) -> Result<(u64, u64), String> {
    let text = match flag.or_else(|| std::env::var("WEAVE_SIM_SHARD").ok()) {
        Some(t) => t,
        None => match (std::env::var("JOB_COMPLETION_INDEX"), std::env::var("WEAVE_SIM_SHARDS")) {
            (Ok(i), Ok(n)) => format!("{i}/{n}"),
            _ => return Ok((0, 1)),
        },
    };
    let bad = || format!("shard `{text}`: write I/N with 0 <= I < N, like 2/8");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// What one exploration (or one shard of it) covered and found.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Summary {
    pub(super) scenario: String,
    pub(super) encrypted: bool,
    pub(super) first: u64,
    pub(super) runs: u64,
    pub(super) shard: (u64, u64),
    pub(super) seeds: Vec<u64>,
    pub(super) failures: Vec<SummaryFailure>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct SummaryFailure {
    pub(super) seed: u64,
    pub(super) check: String,
    pub(super) at_us: u64,
    pub(super) detail: String,
}

pub(super) fn cmd_merge(files: &[PathBuf]) -> Result<bool, String> {
    let mut all: Vec<Summary> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        all.push(serde_json::from_str(&text).map_err(|e| format!("{}: not an explore summary: {e}", f.display()))?);
    }
    let head = &all[0];
    for (f, s) in files.iter().zip(&all) {
        if (&s.scenario, s.encrypted, s.first, s.runs, s.shard.1)
            != (&head.scenario, head.encrypted, head.first, head.runs, head.shard.1)
        {
            return Err(format!("{}: from another exploration than {}", f.display(), files[0].display()));
        }
    }
    let mut shards: Vec<u64> = all.iter().map(|s| s.shard.0).collect();
    shards.sort_unstable();
    let want: Vec<u64> = (0..head.shard.1).collect();
    if shards != want {
        return Err(format!("shards {shards:?} given, {want:?} needed (each once)"));
    }
    let mut seeds: Vec<u64> = all.iter().flat_map(|s| s.seeds.iter().copied()).collect();
    seeds.sort_unstable();
    let expected: Vec<u64> = (head.first..head.first + head.runs).collect();
    if seeds != expected {
        return Err("the shards' seeds do not cover the exploration's exactly once".into());
    }
    let mut failures: Vec<&SummaryFailure> = all.iter().flat_map(|s| &s.failures).collect();
    failures.sort_by_key(|f| f.seed);
    let enc = if head.encrypted { ", encrypted" } else { "" };
    println!("{}{enc}: {} of {} seeds failed ({} shards)", head.scenario, failures.len(), head.runs, head.shard.1);
    for f in &failures {
        println!("  seed {} [{}] at {}us: {}", f.seed, f.check, f.at_us, f.detail);
    }
    Ok(failures.is_empty())
}
