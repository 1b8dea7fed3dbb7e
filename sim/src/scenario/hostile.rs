//! Containers that misbehave for a while (`[[hostile]]`).

use super::*;

/// A container that misbehaves from `start` to `end`, on top of its workload.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hostile {
    /// The container, as `host/cN`.
    pub container: String,
    /// What it does.
    pub kind: HostileKind,
    /// For `spoof`: the container whose MAC it sends from.
    #[serde(default)]
    pub victim: Option<String>,
    /// Frames per second (above 1,000, sent in a burst each millisecond).
    pub rate: u32,
    /// When it starts.
    pub start: Dur,
    /// When it stops.
    pub end: Dur,
}

/// Kinds of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostileKind {
    /// Frames from random source MACs, alternately broadcast and to random (unknown) unicast
    /// MACs.
    MacFlood,
    /// UDP broadcasts on its subnet from its own MAC.
    BroadcastStorm,
    /// Frames from the victim's MAC to random containers of its subnet.
    Spoof,
    /// UDP to random containers of other subnets, straight to their MACs (as with a static
    /// neighbour entry): isolation between subnets is by addressing, so these arrive, and the
    /// subnet-isolation check reports them.
    CrossSubnet,
}
