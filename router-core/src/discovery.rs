//! Discovery: dialling the peers that gossip names and we are not connected to.
//!
//! Discovered targets are bounded (twice `conn_limit`, with the given ones) and rotate: one
//! that fails [`DISCOVERED_TRIES`] times in a row rests, and the next candidate gets its place,
//! so that on a sparse underlay the peers a router can reach are all tried however many it
//! cannot. Candidates wait in a queue that events feed (an entry naming a new address, a
//! connection or target gone, a rest ended), so a router's work grows with the changes it
//! hears, never with the size of its view times the number of changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::conn::Target;
use crate::peer::PeerName;
use crate::router::Router;
use crate::time::Instant;
use crate::timer::Timer;

/// Failed tries in a row after which a discovered target is dropped and rests.
pub(crate) const DISCOVERED_TRIES: u32 = 3;

/// A discovered address that stopped being a target rests this many `backoff_max` before
/// discovery may pick it again (10 minutes at the defaults).
pub(crate) const DISCOVERY_REST_BACKOFFS: u32 = 10;

/// What discovery knows between looks.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    /// Something changed since the last look: look at the next commit.
    pub(crate) pending: bool,
    /// Peers whose entries changed since the last look.
    changed: BTreeSet<PeerName>,
    /// Where each peer named by a connection in some entry listens.
    addrs: BTreeMap<PeerName, SocketAddr>,
    /// Candidates, in name order; each is checked again when it is taken.
    queue: BTreeSet<(PeerName, SocketAddr)>,
    /// Addresses that did not answer: until when they rest, and whose they are...
    rest: BTreeMap<SocketAddr, (Instant, Option<PeerName>)>,
    /// ...and the same rests in the order they end.
    rest_ends: BTreeSet<(Instant, SocketAddr)>,
}

impl Discovery {
    /// The entry of `name` changed: its connections may name new candidates.
    pub(crate) fn entry_changed(&mut self, name: PeerName) {
        self.changed.insert(name);
    }

    /// `peer` is no longer connected or targeted: it is a candidate again, if we know where.
    pub(crate) fn peer_free(&mut self, peer: PeerName) {
        if let Some(&addr) = self.addrs.get(&peer) {
            self.queue.insert((peer, addr));
            self.pending = true;
        }
    }

    /// `addr` is no longer a target we were told to keep: the peers known there are candidates
    /// again. (A scan of the known addresses: this follows an operator's `forget`.)
    pub(crate) fn addr_free(&mut self, addr: SocketAddr) {
        let at: Vec<PeerName> = self.addrs.iter().filter(|(_, a)| **a == addr).map(|(p, _)| *p).collect();
        for p in at {
            self.queue.insert((p, addr));
            self.pending = true;
        }
    }

    /// `addr` did not answer: it rests until `until`.
    pub(crate) fn rest(&mut self, addr: SocketAddr, until: Instant, peer: Option<PeerName>) {
        if let Some((old, _)) = self.rest.insert(addr, (until, peer)) {
            self.rest_ends.remove(&(old, addr));
        }
        self.rest_ends.insert((until, addr));
        self.pending = true;
    }

    /// Ends the rest of `addr`, returning whose it was.
    fn end_rest(&mut self, addr: SocketAddr) -> Option<Option<PeerName>> {
        let (until, peer) = self.rest.remove(&addr)?;
        self.rest_ends.remove(&(until, addr));
        Some(peer)
    }

    /// `peer` became reachable: if its address rests, the rest ends (a partition healed, and
    /// the link that the partition broke may work again).
    pub(crate) fn reachable(&mut self, peer: PeerName) {
        let Some(&addr) = self.addrs.get(&peer) else { return };
        if self.end_rest(addr).is_some() {
            self.queue.insert((peer, addr));
            self.pending = true;
        }
    }

    /// Whether a rest has ended by `now` (then the next look takes it up).
    pub(crate) fn rest_ended(&self, now: Instant) -> bool {
        self.rest_ends.first().is_some_and(|(until, _)| now >= *until)
    }

    /// Peers collected from the topology are forgotten, except where their address rests:
    /// that rest ends early if the peer becomes reachable again.
    pub(crate) fn forget(&mut self, gone: &[PeerName]) {
        for n in gone {
            self.changed.remove(n);
            if self.addrs.get(n).is_some_and(|a| !self.rest.contains_key(a)) {
                self.addrs.remove(n);
            }
        }
    }
}

impl Router {
    /// Dials candidates while discovered targets have room.
    pub(crate) fn discover(&mut self, now: Instant) {
        self.discovery.pending = false;
        let me = self.config.name;
        let d = &mut self.discovery;
        while let Some(&(until, addr)) = d.rest_ends.first() {
            if until > now {
                break;
            }
            if let Some(Some(p)) = d.end_rest(addr) {
                d.queue.insert((p, addr));
            }
        }
        for name in std::mem::take(&mut d.changed) {
            let Some(e) = self.topology.peers.get(&name) else { continue };
            for c in &e.conns {
                let Some(addr) = c.addr else { continue };
                if c.peer == me {
                    continue;
                }
                if d.addrs.insert(c.peer, addr) != Some(addr) {
                    d.queue.insert((c.peer, addr));
                }
            }
        }
        // Discovered targets whose peer left the topology are dropped.
        let stale: Vec<SocketAddr> = self
            .targets
            .iter()
            .filter(|(_, t)| t.discovered && t.conn.is_none())
            .filter(|(_, t)| t.peer.is_some_and(|p| !self.topology.peers.contains_key(&p)))
            .map(|(a, _)| *a)
            .collect();
        for a in stale {
            self.targets.remove(&a);
            self.timers.cancel(Timer::Redial(a));
        }
        let limit = self.config.conn_limit.saturating_mul(2);
        let mut targeted: BTreeSet<PeerName> = self.targets.values().filter_map(|t| t.peer).collect();
        while self.targets.len() < limit {
            let Some((peer, addr)) = self.discovery.queue.pop_first() else { break };
            let d = &self.discovery;
            if self.by_peer.contains_key(&peer)
                || targeted.contains(&peer)
                || self.targets.contains_key(&addr)
                || d.rest.contains_key(&addr)
                || d.addrs.get(&peer) != Some(&addr)
            {
                // Not a candidate now; whatever makes it one again queues it again.
                continue;
            }
            targeted.insert(peer);
            self.targets.insert(addr, Target { discovered: true, peer: Some(peer), ..Target::default() });
            self.dial(now, addr);
        }
    }
}
