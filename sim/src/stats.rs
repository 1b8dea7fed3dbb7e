//! Counters of the simulation itself.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::net::NetDrop;

/// What the simulator did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Faults applied.
    pub faults: u64,
    /// Datagrams the network duplicated.
    pub duplicated: u64,
    /// Datagrams the network dropped, by reason.
    pub net_drops: BTreeMap<NetDrop, u64>,
}

impl SimStats {
    pub(crate) fn net_drop(&mut self, why: NetDrop, _bytes: &[u8]) {
        *self.net_drops.entry(why).or_default() += 1;
    }
}
