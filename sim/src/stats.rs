//! Counters of the simulation itself.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::net::NetDrop;

/// What the simulator did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Events processed, by kind.
    pub kinds: EventKinds,
    /// Faults applied.
    pub faults: u64,
    /// Datagrams the network duplicated.
    pub duplicated: u64,
    /// Frames hostile containers sent.
    pub hostile_frames: u64,
    /// Allocations refused or failed (no space in time, a bad request).
    pub ipam_refused: u64,
    /// `weave rmpeer` runs of the operator the scenario plays (`ipam.rmpeer_lost_voters`).
    pub ipam_operator_rmpeers: u64,
    /// Datagrams the network dropped, by reason.
    pub net_drops: BTreeMap<NetDrop, u64>,
}

/// Events processed, by kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct EventKinds {
    /// Router timers.
    pub timers: u64,
    /// Datagrams arriving.
    pub udp: u64,
    /// TCP segments, handshakes and failed dials.
    pub tcp: u64,
    /// Container traffic (pings, UDP, broadcasts).
    pub work: u64,
    /// Host starts, faults and the simulator's own checks.
    pub other: u64,
    /// Router wake-ups that were moved before they came due: popped and discarded, not
    /// counted as events.
    pub superseded: u64,
}

impl SimStats {
    pub(crate) fn net_drop(&mut self, why: NetDrop, _bytes: &[u8]) {
        *self.net_drops.entry(why).or_default() += 1;
    }
}
