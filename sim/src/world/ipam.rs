//! The allocator's workload and checks: targets ask for addresses when their host starts,
//! churn frees and asks again, and no address is ever held by two live targets.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::*;

/// The target names of host `h`'s `k`-th target in its `gen`-th life.
fn target(h: &str, k: u32, gen: u32) -> String {
    if gen == 0 {
        format!("{h}/t{k}")
    } else {
        format!("{h}/t{k}.{gen}")
    }
}

impl World {
    /// After host `h`'s router is built: restore its saved allocator state, then let each of
    /// its targets ask (a target that held an address before gets the same one back).
    pub(super) fn ipam_start(&mut self, h: u32) {
        let Some(spec) = self.scenario.ipam.clone() else { return };
        let now = self.now;
        let host = &mut self.hosts[h as usize];
        let r = host.router.as_mut().expect("just started");
        if let Some(state) = host.ipam_saved.clone() {
            r.restore_ipam(now, state).expect("a state this router saved");
        }
        for k in 0..spec.targets_per_host {
            let t = target(&host.name, k, host.ipam_gens.get(&k).copied().unwrap_or(0));
            if r.allocate(now, &t, None).is_err() {
                self.stats.ipam_refused += 1;
            }
        }
        self.ipam_sync(h);
    }

    /// Host `h`'s allocator state changed: save it (as a state directory would), and check
    /// that no address it now leases is leased by another live target.
    pub(super) fn ipam_sync(&mut self, h: u32) {
        let host = &mut self.hosts[h as usize];
        let Some(r) = host.router.as_ref() else { return };
        let Some(ipam) = r.ipam() else { return };
        host.ipam_saved = Some(ipam.state());
        let gen = ipam.generation();
        let conflicts = ipam.stats.conflicts;
        let now: BTreeMap<Ipv4Addr, String> = ipam.leases().iter().map(|(a, l)| (*a, l.target.clone())).collect();
        let before = core::mem::replace(&mut host.ipam_leases, now.clone());
        for (a, t) in before.iter().filter(|(a, t)| now.get(a) != Some(t)) {
            if self.ipam_holders.get(a).is_some_and(|(o, who)| (*o, who) == (h, t)) {
                self.ipam_holders.remove(a);
            }
        }
        let at = self.now.as_micros();
        for (a, t) in now.iter().filter(|(a, t)| before.get(a) != Some(t)) {
            self.trace.record(at, 11, h, u64::from(u32::from(*a)), || {
                format!("{{\"t\":{at},\"ev\":\"lease\",\"host\":{h},\"addr\":\"{a}\",\"target\":\"{t}\"}}")
            });
            if let Some((other, who)) = self.ipam_holders.get(a).filter(|(o, who)| (*o, who) != (h, t)) {
                let detail = format!("{a} is held by {who} (on {}) and by {t}", self.hosts[*other as usize].name);
                self.checker.on_ipam_conflict(self.now, detail);
            }
            self.ipam_holders.insert(*a, (h, t.clone()));
        }
        if conflicts > 0 {
            let detail = format!("{}: {conflicts} leases in blocks another peer owns", self.hosts[h as usize].name);
            self.checker.on_ipam_conflict(self.now, detail);
        }
        // Saved: the hand-overs it holds may leave now.
        let now = self.now;
        if let Some(r) = self.hosts[h as usize].router.as_mut() {
            r.ipam_saved(now, gen);
            self.drain(h);
        }
    }

    /// Host `h` crashed: its targets are gone with it (its saved state stays).
    pub(super) fn ipam_crash(&mut self, h: u32) {
        for (a, t) in core::mem::take(&mut self.hosts[h as usize].ipam_leases) {
            if self.ipam_holders.get(&a).is_some_and(|(o, who)| (*o, who) == (h, &t)) {
                self.ipam_holders.remove(&a);
            }
        }
    }

    /// Churn: a random target of a random running host frees its address and its successor
    /// asks for one.
    pub(super) fn on_ipam_churn(&mut self) {
        let Some(spec) = self.scenario.ipam.clone() else { return };
        let Some(period) = spec.churn() else { return };
        let next = self.now + period;
        self.push(next, Ev::IpamChurn);
        let running: Vec<u32> = (0..self.hosts.len() as u32).filter(|&h| self.hosts[h as usize].running()).collect();
        if spec.rmpeer_lost_voters {
            if let Some(&h) = running.first() {
                self.rmpeer_lost_voters(h);
            }
        }
        if running.is_empty() || spec.targets_per_host == 0 {
            return;
        }
        let h = running[below(&mut self.ipam_rng, running.len() as u64) as usize];
        let k = below(&mut self.ipam_rng, u64::from(spec.targets_per_host)) as u32;
        let now = self.now;
        let host = &mut self.hosts[h as usize];
        let gen = host.ipam_gens.entry(k).or_insert(0);
        let old = target(&host.name, k, *gen);
        *gen += 1;
        let new = target(&host.name, k, *gen);
        let r = host.router.as_mut().expect("running");
        r.release(now, &old, None);
        if r.allocate(now, &new, None).is_err() {
            self.stats.ipam_refused += 1;
        }
        self.drain(h);
    }
}

impl World {
    /// The operator's remedy when host `h`'s allocator reports that a majority of the voters
    /// lost their state: `weave rmpeer` there for each of them.
    fn rmpeer_lost_voters(&mut self, h: u32) {
        let now = self.now;
        let Some(r) = self.hosts[h as usize].router.as_mut() else { return };
        let Some(ipam) = r.ipam().filter(|i| i.quorum_lost()) else { return };
        let lost: Vec<_> =
            ipam.agreed().into_iter().flat_map(|a| a.voters.iter()).filter(|o| ipam.ended(o)).map(|o| o.name).collect();
        for name in lost {
            if r.rmpeer(now, name).is_ok() {
                self.stats.ipam_operator_rmpeers += 1;
            }
        }
        self.drain(h);
    }
}

/// Within one component of running hosts: every router holds the same ring, block for
/// block, and the same agreed state, and no allocation is waiting.
pub(crate) fn agreed(w: &World, members: &[u32]) -> Result<(), String> {
    if w.scenario.ipam.is_none() {
        return Ok(());
    }
    let ring = |h: u32| w.hosts[h as usize].router.as_ref().and_then(|r| r.ipam()).and_then(|i| i.ring());
    let Some(&first) = members.first() else { return Ok(()) };
    let name = |h: u32| &w.hosts[h as usize].name;
    for &m in members {
        let ipam = w.hosts[m as usize].router.as_ref().and_then(|r| r.ipam()).expect("running with an allocator");
        let Some(r) = ipam.ring() else {
            return Err(format!("{} has no address ring yet ({} votes)", name(m), ipam.votes().len()));
        };
        if let Some((t, s)) = ipam.pending().next() {
            return Err(format!("{} still waits for an address for {t} in {s}", name(m)));
        }
        if Some(r) != ring(first) {
            return Err(format!("{} and {} hold different address rings", name(first), name(m)));
        }
        let agreed = |h: u32| w.hosts[h as usize].router.as_ref().and_then(|r| r.ipam()).and_then(|i| i.agreed());
        if agreed(m) != agreed(first) {
            let slot = |h: u32| agreed(h).map(|a| a.slot);
            return Err(format!(
                "{} and {} hold different agreed states (slots {:?} and {:?})",
                name(first),
                name(m),
                slot(first),
                slot(m)
            ));
        }
        let spec = w.scenario.ipam.as_ref().expect("checked above");
        if spec.all_served {
            let host = &w.hosts[m as usize];
            for k in 0..spec.targets_per_host {
                let t = target(&host.name, k, host.ipam_gens.get(&k).copied().unwrap_or(0));
                if ipam.lookup(&t, ipam.config().default_subnet).is_none() {
                    return Err(format!("{t} has no address"));
                }
            }
        }
    }
    Ok(())
}
