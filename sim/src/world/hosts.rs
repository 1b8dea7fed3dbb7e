//! Hosts: each router's configuration from the scenario, start, crash and restart, and its
//! one wake-up in the event queue.

use super::*;

impl World {
    /// The password host `h`'s router is given, if any (peers link only when theirs match).
    pub(crate) fn password_of(&self, h: u32) -> Option<&str> {
        let s = &self.scenario.router;
        let name = &self.hosts[h as usize].name;
        s.passwords.get(name).or(s.password.as_ref()).map(String::as_str).filter(|p| !p.is_empty())
    }

    pub(super) fn router_config(&self, h: u32) -> Config {
        let s = &self.scenario.router;
        let mut c = Config::new(peer_name(h));
        c.nickname = self.hosts[h as usize].name.clone();
        c.share = Some(self.entries.clone());
        // Thousands of routers share this process: keep little idle output room each.
        c.outbox_keep = 4 << 10;
        c.seed = derive(self.seed, "router", (u64::from(h) << 32) | u64::from(self.hosts[h as usize].incarnation));
        s.apply(&mut c);
        c.password = self.password_of(h).map(|p| Password::new(p.as_bytes()).expect("non-empty"));
        c.ipam = self.scenario.ipam.as_ref().map(|i| i.config(self.hosts.len()));
        c
    }

    pub(super) fn start_host(&mut self, h: u32) {
        if self.hosts[h as usize].router.is_some() {
            return;
        }
        self.hosts[h as usize].incarnation += 1;
        let cfg = self.router_config(h);
        let now = self.now;
        // Scenario validation checked the settings; key material comes from the seed, so a
        // run replays exactly.
        let mut r = Router::seeded(now, cfg).expect("validated router settings");
        for &t in &self.hosts[h as usize].targets {
            r.connect(now, router_addr(t)).expect("valid address");
        }
        self.hosts[h as usize].router = Some(r);
        self.ipam_start(h);
        let inc = self.hosts[h as usize].incarnation;
        self.trace.record(now.as_micros(), 1, h, u64::from(inc), || {
            format!("{{\"t\":{},\"ev\":\"start\",\"host\":{h},\"incarnation\":{inc}}}", now.as_micros())
        });
        // Containers announce themselves, as `weave attach` does.
        for c in self.hosts[h as usize].containers.clone() {
            let f = self.containers[c as usize].gratuitous_arp(&mut self.ids);
            self.container_sent(c, f);
        }
        self.drain(h);
    }

    pub(super) fn crash_host(&mut self, h: u32) {
        self.ipam_crash(h);
        let host = &mut self.hosts[h as usize];
        host.router = None;
        host.paused = false;
        host.held.clear();
        host.timer_at = None;
        host.timer_gen += 1;
        // Every connection of the old incarnation is dead at this end; the other end learns
        // it by timeout, or by a reset once the host is back (see `restart_host`).
        let inc = host.incarnation;
        for id in 0..self.tcps.len() as u32 {
            let Some(t) = self.tcps[id as usize].as_mut() else { continue };
            for d in 0..2 {
                if t.ends[d].0 == h && t.ends[d].1 == inc {
                    t.open[d] = false;
                }
            }
        }
    }

    pub(super) fn restart_host(&mut self, h: u32) {
        if self.hosts[h as usize].router.is_some() {
            self.crash_host(h);
        }
        let inc = self.hosts[h as usize].incarnation;
        // The peers' connections to the old incarnation are reset.
        let mut resets = Vec::new();
        for id in 0..self.tcps.len() as u32 {
            let Some(t) = self.tcps[id as usize].as_mut() else { continue };
            for d in 0..2 {
                if t.ends[d].0 == h && t.ends[d].1 == inc && t.open[1 - d] {
                    t.queues[d].clear();
                    resets.push((id, d as u8));
                }
            }
        }
        for (id, d) in resets {
            self.queue_seg(id, d, None);
        }
        self.start_host(h);
    }

    pub(super) fn arm_timer(&mut self, h: u32) {
        let host = &mut self.hosts[h as usize];
        let Some(r) = &host.router else { return };
        let next = r.poll_timeout();
        if next != host.timer_at {
            host.timer_at = next;
            host.timer_gen += 1;
            let gen = host.timer_gen;
            if let Some(at) = next {
                self.push(at, Ev::Timer { host: h, gen });
            }
        }
    }

    pub(super) fn on_timer(&mut self, h: u32, gen: u32) {
        let host = &mut self.hosts[h as usize];
        debug_assert_eq!(gen, host.timer_gen, "superseded wake-ups are discarded in step");
        if host.paused {
            return;
        }
        host.timer_at = None;
        let now = self.now;
        let Some(r) = host.router.as_mut() else { return };
        r.handle_timeout(now);
        self.trace.record(now.as_micros(), 2, h, 0, || {
            format!("{{\"t\":{},\"ev\":\"timer\",\"host\":{h}}}", now.as_micros())
        });
        self.drain(h);
    }
}
