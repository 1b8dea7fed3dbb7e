//! The router's side of the address allocator: commands, gossip, timer, events.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::ipam::{Ipam, IpamError, IpamState};
use crate::peer::{ConnId, PeerName};
use crate::router::{Event, Router};
use crate::time::Instant;
use crate::timer::Timer;
use crate::wire::control::Message;
use crate::wire::ipam::IpamUpdate;

impl Router {
    /// The address allocator, when configured.
    pub fn ipam(&self) -> Option<&Ipam> {
        self.ipam.as_ref()
    }

    /// The allocator's state to persist (see [`Event::IpamChanged`]).
    pub fn ipam_state(&self) -> Option<IpamState> {
        self.ipam.as_ref().map(Ipam::state)
    }

    /// Restores the allocator from a saved state. Call it right after construction, before
    /// any connection: a restored router keeps its life, its promises, its ring and leases.
    pub fn restore_ipam(&mut self, now: Instant, state: IpamState) -> Result<(), IpamError> {
        let cur = self.ipam.as_ref().ok_or(IpamError::Disabled)?;
        self.ipam = Some(Ipam::new(cur.config().clone(), cur.owner(), Some(state))?);
        self.ipam_due = true;
        self.commit(now);
        Ok(())
    }

    /// Runs a command on the allocator (`reachable`: the peers we reach), then lets it think
    /// and sends what changed.
    fn with_ipam<T>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Ipam, &BTreeSet<PeerName>) -> T,
    ) -> Result<T, IpamError> {
        // The routes as they stand: a command does not hurry a recomputation along.
        let reachable: BTreeSet<PeerName> = self.routes.reachable().collect();
        let ipam = self.ipam.as_mut().ok_or(IpamError::Disabled)?;
        let r = f(ipam, &reachable);
        self.ipam_due = true;
        self.commit(now);
        Ok(r)
    }

    /// An address for `target` in `subnet` (the default subnet when `None`). `Ok(None)`:
    /// it comes later as [`Event::Allocated`].
    pub fn allocate(
        &mut self,
        now: Instant,
        target: &str,
        subnet: Option<Ipv4Net>,
    ) -> Result<Option<Ipv4Net>, IpamError> {
        self.with_ipam(now, |i, _| i.allocate(now, target, subnet))?
    }

    /// Records an address `target` uses (see [`Ipam::claim`]).
    pub fn claim(&mut self, now: Instant, target: &str, addr: Ipv4Net) -> Result<bool, IpamError> {
        self.with_ipam(now, |i, _| i.claim(target, addr))?
    }

    /// Frees the addresses `target` holds (all, and its waiting allocations, when `only` is
    /// `None`); returns those freed.
    pub fn release(&mut self, now: Instant, target: &str, only: Option<&[Ipv4Addr]>) -> Vec<Ipv4Addr> {
        self.with_ipam(now, |i, _| i.release(target, only)).unwrap_or_default()
    }

    /// The generation of the allocator's state: pass it to [`Router::ipam_saved`] once the
    /// state of [`Router::ipam_state`] taken with it is saved.
    pub fn ipam_generation(&self) -> u64 {
        self.ipam.as_ref().map_or(0, Ipam::generation)
    }

    /// The driver saved the allocator's state of generation `gen` (with
    /// [`crate::IpamConfig::write_ahead`]): hand-overs it records are sent now.
    pub fn ipam_saved(&mut self, now: Instant, gen: u64) {
        let Some(ipam) = self.ipam.as_mut() else { return };
        ipam.saved(gen);
        self.ipam_commit(now);
    }

    /// Takes over the address space of `peer`, which the operator says is gone for good
    /// (`weave rmpeer`). Run it on one peer only: two peers taking the same space at once
    /// would both hand it out. Returns the blocks taken.
    pub fn rmpeer(&mut self, now: Instant, peer: PeerName) -> Result<usize, IpamError> {
        self.with_ipam(now, |i, reachable| i.take_over(peer, reachable))?
    }

    /// Leaves the network for good (`weave reset`): forgets every lease and hands this
    /// peer's space to the reachable peers. Returns the blocks handed over.
    pub fn ipam_leave(&mut self, now: Instant) -> usize {
        self.with_ipam(now, |i, reachable| i.leave(reachable)).unwrap_or(0)
    }

    pub(crate) fn send_ipam_full(&mut self, id: ConnId) {
        let Some(ipam) = &self.ipam else { return };
        let full = ipam.full_update();
        self.send_ipam(id, full);
    }

    fn send_ipam(&mut self, id: ConnId, u: IpamUpdate) {
        for part in u.split() {
            self.send_gossip(id, &Message::Ipam(part));
        }
    }

    pub(crate) fn handle_ipam(&mut self, now: Instant, u: &IpamUpdate) {
        let Some(ipam) = self.ipam.as_mut() else {
            self.stats.ipam_ignored += 1;
            return;
        };
        // Nothing new (an echo, another ring): nothing to think about.
        self.ipam_due |= ipam.merge(now, u);
    }

    /// Runs the allocator if due, floods what changed, reports results.
    pub(crate) fn ipam_commit(&mut self, now: Instant) {
        let Some(ipam) = self.ipam.as_mut() else { return };
        if core::mem::take(&mut self.ipam_due) {
            let reachable: BTreeSet<PeerName> = self.routes.reachable().chain([self.config.name]).collect();
            match ipam.think(now, &reachable) {
                Some(at) => self.timers.set(Timer::Ipam, at.max(now)),
                None => self.timers.cancel(Timer::Ipam),
            }
        }
        let Some(ipam) = self.ipam.as_mut() else { return };
        let delta = ipam.take_delta();
        let mut events = Vec::new();
        while let Some(a) = ipam.poll_allocated() {
            events.push(Event::Allocated(a));
        }
        if ipam.take_changed() {
            events.push(Event::IpamChanged);
        }
        if let Some(delta) = delta {
            let conns: Vec<ConnId> = self.by_peer.values().copied().collect();
            for id in conns {
                self.send_ipam(id, delta.clone());
            }
        }
        for e in events {
            self.push_event(e);
        }
    }
}
