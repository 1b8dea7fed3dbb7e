//! Topology gossip: triggered updates on change, anti-entropy by summaries and digests.
//!
//! A change floods as an update carrying only the changed entries, sent once over each
//! connection (never back where it came from), so one link change costs bytes in proportion
//! to the changed peers' degrees. Every `anti_entropy` period each side sends a summary (a
//! hash of all versions); on a mismatch the receiver answers with its digest and gets back
//! exactly the entries it lacks or holds older.

use core::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use core::time::Duration;

use crate::peer::{ConnId, PeerName};
use crate::router::{Holders, Router};
use crate::time::Instant;
use crate::timer::Timer;
use crate::topology::{entry_order, merge_pooled};
use crate::wire::control::Message;
use crate::wire::gossip::{Digest, PeerEntry, Summary, Update, UPDATE_ROOM};

impl Router {
    pub(crate) fn send_gossip(&mut self, id: ConnId, msg: &Message) {
        let n = self.send_msg(id, msg);
        self.stats.gossip_bytes_sent += n as u64;
        if matches!(msg, Message::GossipUpdate(_)) {
            self.stats.gossip_updates_sent += 1;
        }
    }

    /// Sends `entries` to `id` in as many update messages as they need.
    fn send_entries(&mut self, id: ConnId, entries: Vec<Arc<PeerEntry>>) {
        let mut chunk = Vec::new();
        let mut size = 0;
        for e in entries {
            let len = e.encoded_len();
            if size + len > UPDATE_ROOM && !chunk.is_empty() {
                self.send_gossip(id, &Message::GossipUpdate(Update { entries: std::mem::take(&mut chunk) }));
                size = 0;
            }
            size += len;
            chunk.push(e);
        }
        if !chunk.is_empty() {
            self.send_gossip(id, &Message::GossipUpdate(Update { entries: chunk }));
        }
    }

    pub(crate) fn handle_summary(&mut self, id: ConnId, theirs: Summary) {
        if theirs == self.topology.summary() {
            return;
        }
        for d in self.topology.digests() {
            self.send_gossip(id, &Message::GossipDigest(d));
        }
    }

    pub(crate) fn handle_digest(&mut self, id: ConnId, d: &Digest) {
        let newer: Vec<Arc<PeerEntry>> = self.topology.newer_than(d).into_iter().cloned().collect();
        if !newer.is_empty() {
            self.send_entries(id, newer);
        }
    }

    pub(crate) fn handle_update(&mut self, from: ConnId, u: Update) {
        let me = self.config.name;
        for e in u.entries {
            if e.name == me {
                self.defend_own_entry(&e);
                continue;
            }
            if !e.name.is_valid() {
                continue;
            }
            let name = e.name;
            if self.topology.peers.len() >= self.config.peers_max && !self.topology.peers.contains_key(&name) {
                self.stats.gossip_entries_refused += 1;
                continue;
            }
            let (uid, version) = (e.uid, e.version);
            if merge_pooled(&mut self.topology.peers, e, &self.pool) {
                self.topology.changed();
                self.stats.gossip_entries_merged += 1;
                self.dirty.insert(name, Holders::from_elem(from, 1));
                if self.config.discovery {
                    self.discovery.entry_changed(name);
                }
                self.routes_dirty = true;
            } else if let Some(holders) = self.dirty.get_mut(&name) {
                // A neighbour that sends us the version we are about to pass on has it: it
                // is left out of the flush, so crossing copies do not travel every link twice.
                let held = self.topology.peers.get(&name);
                if held.is_some_and(|h| h.uid == uid && h.version == version) && !holders.contains(&from) {
                    holders.push(from);
                }
            }
        }
    }

    /// Someone holds an entry under our name that is not ours, from an earlier incarnation
    /// or a stale copy: make ours win by jumping past its version.
    fn defend_own_entry(&mut self, theirs: &PeerEntry) {
        let Some(ours) = self.topology.peers.get(&self.config.name) else { return };
        if entry_order(theirs, ours) == Ordering::Less || *theirs == **ours {
            return;
        }
        self.version = self.version.max(theirs.version) + 1;
        let mut entry = PeerEntry::clone(ours);
        entry.version = self.version;
        self.topology.peers.insert(self.pool.entry(Arc::new(entry)));
        self.topology.changed();
        self.dirty.insert(self.config.name, Holders::new());
        self.routes_dirty = true;
    }

    /// Sends the coalesced changes, and sets how long the next ones wait: while changes keep
    /// coming the wait doubles up to `gossip_delay_max`; after a quiet spell it is
    /// `gossip_coalesce` again.
    pub(crate) fn flush_gossip_throttled(&mut self, now: Instant) {
        let max = self.config.gossip_delay_max.max(self.config.gossip_coalesce);
        let busy = self.last_flush.is_some_and(|t| now - t < max * 2);
        self.flush_hold =
            if busy { (self.flush_hold * 2).max(self.config.gossip_coalesce).min(max) } else { Duration::ZERO };
        self.last_flush = Some(now);
        self.flush_gossip();
    }

    /// Sends coalesced changes to every connection that is up, except those that sent us the
    /// same version (they have it).
    pub(crate) fn flush_gossip(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let conns: Vec<ConnId> = self.by_peer.values().copied().collect();
        for id in conns {
            let entries: Vec<Arc<PeerEntry>> = dirty
                .iter()
                .filter(|(_, holders)| !holders.contains(&id))
                .filter_map(|(n, _)| self.topology.peers.get(n).cloned())
                .collect();
            if !entries.is_empty() {
                self.send_entries(id, entries);
            }
        }
    }

    /// Periodic repair: collect unreachable peers, then compare summaries with every neighbour.
    pub(crate) fn anti_entropy(&mut self, now: Instant) {
        // Everyone reachable over established links is reachable by advertised connections:
        // then there is nothing to collect and the full search is skipped. Lazy routes are
        // not computed for this: the search is cheaper than routes nobody else wants.
        let all_reachable = !self.lazy_routes() && {
            self.recompute_if_dirty();
            self.routes.reachable().count() == self.topology.peers.len()
        };
        let unreachable = if all_reachable { BTreeSet::new() } else { self.topology.unreachable(self.config.name) };
        // A peer is collected only when it was unreachable at the previous round too: entries
        // that arrive out of order (a healing partition) are not thrown away half-way.
        let gone: Vec<PeerName> = unreachable.intersection(&self.gc_candidates).copied().collect();
        self.gc_candidates = unreachable.into_iter().filter(|n| !gone.contains(n)).collect();
        self.topology.remove(&gone);
        if !gone.is_empty() {
            tracing::debug!(count = gone.len(), "collected unreachable peers");
            self.discovery.forget(&gone);
            for n in &gone {
                self.dirty.remove(n);
                self.dedup.forget(*n);
            }
            self.routes_dirty = true;
        }
        // A rested address whose rest has ended is tried again even when nothing else changes.
        if self.config.discovery && self.discovery.rest_ended(now) {
            self.discovery.pending = true;
        }
        let summary = self.topology.summary();
        let conns: Vec<ConnId> = self.by_peer.values().copied().collect();
        for id in conns {
            self.send_gossip(id, &Message::GossipSummary(summary));
        }
        let next = now + self.jittered(self.config.anti_entropy);
        self.timers.set(Timer::AntiEntropy, next);
    }

    /// Names in the current view (for tests and status).
    pub fn peer_names(&self) -> impl Iterator<Item = PeerName> + '_ {
        self.topology.peers.keys().copied()
    }
}
