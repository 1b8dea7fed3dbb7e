//! Faults: partitions, loss, crashes and the rest of a scenario's schedule, applied at their
//! times, and the liveness checks that follow the last one.

use super::*;

impl World {
    pub(super) fn idx(&self, name: &str) -> u32 {
        self.hosts.iter().position(|h| h.name == name).expect("validated host name") as u32
    }

    pub(super) fn on_fault(&mut self, i: u32) {
        let f = self.faults[i as usize].clone();
        let now = self.now;
        self.stats.faults += 1;
        let desc = serde_json::to_string(&f.action).unwrap_or_default();
        self.trace.record(now.as_micros(), 10, 0, u64::from(i), || {
            format!("{{\"t\":{},\"ev\":\"fault\",\"fault\":{desc}}}", now.as_micros())
        });
        match &f.action {
            FaultAction::Partition { groups } => {
                let g: Vec<Vec<u32>> = groups.iter().map(|g| g.iter().map(|h| self.idx(h)).collect()).collect();
                self.net.partition(&g);
            }
            FaultAction::OneWay { from, to } => {
                let from: Vec<u32> = from.iter().map(|h| self.idx(h)).collect();
                let to: Vec<u32> = to.iter().map(|h| self.idx(h)).collect();
                self.net.one_way(&from, &to);
            }
            FaultAction::Heal => {
                self.net.heal();
                self.unstall();
            }
            FaultAction::Cut { a, b } => self.net.set_cut(self.idx(a), self.idx(b), true),
            FaultAction::Repair { a, b } => {
                self.net.set_cut(self.idx(a), self.idx(b), false);
                self.unstall();
            }
            FaultAction::UdpBlock { a, b } => self.net.set_udp_blocked(self.idx(a), self.idx(b), true),
            FaultAction::UdpBlockOneWay { from, to } => self.net.block_udp_one_way(self.idx(from), self.idx(to)),
            FaultAction::LinkClass { a, b, class } => {
                let c = self.net.class_index(class).expect("classes of faults are built");
                let (a, b) = (self.idx(a), self.idx(b));
                // A link that does not exist has no class to change (validation names hosts,
                // not links): nothing happens, as with a cut of a missing link.
                let _ = self.net.set_class(a, b, c);
            }
            FaultAction::UdpUnblock { a, b } => self.net.set_udp_blocked(self.idx(a), self.idx(b), false),
            FaultAction::Mtu { a, b, mtu } => self.net.set_mtu(self.idx(a), self.idx(b), *mtu),
            FaultAction::Crash { host } => {
                let h = self.idx(host);
                self.crash_host(h);
            }
            FaultAction::Restart { host, wipe } => {
                let h = self.idx(host);
                if *wipe {
                    self.hosts[h as usize].ipam_saved = None;
                }
                self.restart_host(h);
                self.unstall();
            }
            FaultAction::Pause { host } => {
                let h = self.idx(host);
                if self.hosts[h as usize].router.is_some() {
                    self.hosts[h as usize].paused = true;
                }
            }
            FaultAction::Resume { host } => {
                let h = self.idx(host);
                let host = &mut self.hosts[h as usize];
                if host.paused {
                    host.paused = false;
                    let held = std::mem::take(&mut host.held);
                    host.timer_at = None;
                    for ev in held {
                        self.push(now, ev);
                    }
                    if let Some(r) = self.hosts[h as usize].router.as_mut() {
                        r.handle_timeout(now);
                    }
                    self.drain(h);
                }
            }
            FaultAction::Rmpeer { host, peer } => {
                let (h, gone) = (self.idx(host), self.idx(peer));
                let now = self.now;
                if let Some(r) = self.hosts[h as usize].router.as_mut() {
                    if r.rmpeer(now, peer_name(gone)).is_err() {
                        self.stats.ipam_refused += 1;
                    }
                    self.drain(h);
                }
            }
            FaultAction::Move { container, to } => {
                let (hname, k) = container.split_once('/').expect("validated");
                let k: usize = k[1..].parse().expect("validated");
                let c =
                    self.containers.iter().position(|c| c.name == format!("{hname}/c{k}")).expect("validated") as u32;
                let old = self.containers[c as usize].host as u32;
                let to = self.idx(to);
                if old != to {
                    let mac = self.containers[c as usize].mac;
                    self.hosts[old as usize].bridge.forget(mac);
                    self.hosts[old as usize].containers.retain(|x| *x != c);
                    self.hosts[to as usize].containers.push(c);
                    self.containers[c as usize].host = to as usize;
                    self.containers[c as usize].moves += 1;
                    let f = self.containers[c as usize].gratuitous_arp(&mut self.ids);
                    self.container_sent(c, f);
                }
            }
        }
    }

    /// Applies a fault now (benchmarks and interactive use).
    pub fn apply(&mut self, action: FaultAction) {
        let at = crate::scenario::Dur(self.now - Instant::ZERO);
        self.faults.push(Fault { at, action });
        let i = (self.faults.len() - 1) as u32;
        self.push(self.now, Ev::Fault(i));
    }

    pub(super) fn on_liveness(&mut self) {
        crate::check::liveness_tick(self);
    }

    pub(crate) fn push_liveness(&mut self, at: Instant) {
        self.push(at, Ev::Liveness);
    }
}
