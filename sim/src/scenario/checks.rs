//! What must hold (`[checks]`): safety, convergence and pings after the faults, pings during
//! them, and bounds on link changes and on what routers send.

use super::*;

/// A stretch of time in which most of the workload's pings must be answered.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start.
    pub from: Dur,
    /// End.
    pub to: Dur,
    /// The least fraction of the workload's pings sent within the window (by and to
    /// containers that are neither hostile nor a spoofing victim) answered within a second.
    pub pings_answered_min: f64,
}

/// Checks and their time budgets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// Safety checks after every event.
    pub safety: bool,
    /// After the last fault, topology views agree and routes are shortest within this.
    pub converge_within: Option<Dur>,
    /// After the last fault, every connected same-subnet pair pings within this.
    pub ping_within: Option<Dur>,
    /// Most container pairs the ping check tries (chosen by the seed when there are more).
    pub ping_pairs_max: usize,
    /// Liveness while things happen: windows in which the workload's pings must get through.
    pub during: Vec<Window>,
    /// Checks turned off: any of `safety`, `converge`, `ping`.
    pub skip: Vec<String>,
    /// Bounds on how often links may change (flap).
    pub link_changes: Vec<LinkChanges>,
    /// Most gossip bytes any one router may send over the run.
    pub gossip_bytes_max: Option<u64>,
    /// Most control connections any one router may dial over the run.
    pub dials_max: Option<u64>,
}

/// At most `max` changes (established or lost, as `a`'s router sees them) of the link between
/// `a` and `b` from `from` to `to`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkChanges {
    /// One end.
    pub a: String,
    /// The other end.
    pub b: String,
    /// Most changes.
    pub max: u32,
    /// Start of the count (default: the start).
    #[serde(default)]
    pub from: Dur,
    /// End of the count (default: the end of the run).
    #[serde(default)]
    pub to: Option<Dur>,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            safety: yes(),
            converge_within: Some(Dur(Duration::from_secs(10))),
            ping_within: Some(Dur(Duration::from_secs(10))),
            ping_pairs_max: 200,
            during: Vec::new(),
            skip: Vec::new(),
            link_changes: Vec::new(),
            gossip_bytes_max: None,
            dials_max: None,
        }
    }
}
