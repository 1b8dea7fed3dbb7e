//! A few allocators wired together for tests: updates pass between the peers of each part
//! of a partition until nothing changes.

use std::collections::BTreeSet;

use core::time::Duration;

use super::{Ipam, IpamConfig, Owner};
use crate::peer::PeerName;
use crate::time::Instant;

pub(super) fn owner(n: u8) -> Owner {
    Owner { name: PeerName([2, 0, 0, 0, 0, n]), life: u32::from(n) }
}

/// Three allocators, and the time.
pub(super) struct Net {
    pub(super) peers: Vec<Ipam>,
    pub(super) now: Instant,
}

impl Net {
    /// Three peers that start together.
    pub(super) fn new(range: &str) -> Net {
        Net::starting(range, 3)
    }

    /// Three peers of which the first `n` start the network; the others join after.
    pub(super) fn starting(range: &str, n: usize) -> Net {
        let mut cfg = IpamConfig::new(range.parse().unwrap());
        cfg.init_peers = 3;
        Net::with(cfg, n)
    }

    /// Three peers with `cfg`, of which the first `n` start the network.
    pub(super) fn with(cfg: IpamConfig, n: usize) -> Net {
        let peers = (1..=3).map(|n| Ipam::new(cfg.clone(), owner(n), None).unwrap()).collect();
        let mut net = Net { peers, now: Instant::ZERO };
        net.exchange(n);
        net.settle_among(n);
        net.exchange(3);
        net.settle();
        net
    }

    /// Every one of the first `n` peers sends its whole state to each (a connection comes up).
    pub(super) fn exchange(&mut self, n: usize) {
        for p in 0..n {
            let full = self.peers[p].full_update();
            for q in 0..n {
                self.peers[q].merge(self.now, &full);
            }
        }
    }

    pub(super) fn settle(&mut self) {
        self.settle_among(3);
    }

    /// Passes updates among the first `n` peers only.
    pub(super) fn settle_among(&mut self, n: usize) {
        self.settle_parts(&[(0..n).collect()]);
    }

    /// Passes updates within each part only (what one part sends is lost to the others).
    pub(super) fn settle_parts(&mut self, parts: &[Vec<usize>]) {
        for _ in 0..200 {
            let mut quiet = true;
            for part in parts {
                let reach: BTreeSet<PeerName> = part.iter().map(|&k| owner(k as u8 + 1).name).collect();
                for &p in part {
                    self.peers[p].think(self.now, &reach);
                    if let Some(d) = self.peers[p].take_delta() {
                        quiet = false;
                        for &q in part.iter().filter(|&&q| q != p) {
                            self.peers[q].merge(self.now, &d);
                        }
                    }
                }
            }
            if quiet {
                return;
            }
        }
        panic!("updates never settle");
    }

    /// Settles the parts, then lets `secs` seconds pass a second at a time, settling after each.
    pub(super) fn run_parts(&mut self, parts: &[Vec<usize>], secs: u64) {
        self.settle_parts(parts);
        for _ in 0..secs {
            self.now += Duration::from_secs(1);
            self.settle_parts(parts);
        }
    }
}
