//! Containers and bridges: which containers each host has and what they send, frames
//! between containers, the bridge and the router, and the ping probes the checkers read.

use super::*;

impl World {
    pub(super) fn make_containers(&mut self) {
        let subnets: Vec<Subnet> =
            self.scenario.workload.subnets.iter().map(|s| Subnet::parse(s).expect("validated")).collect();
        let mut used = vec![0u32; subnets.len()];
        let per = self.scenario.workload.containers_per_host;
        for h in 0..self.hosts.len() {
            for k in 0..per {
                let idx = self.containers.len();
                let si = idx % subnets.len();
                used[si] += 1;
                let sn = subnets[si];
                let mac = Mac([0x02, 0xc0, (idx >> 24) as u8, (idx >> 16) as u8, (idx >> 8) as u8, idx as u8]);
                let name = format!("{}/c{k}", self.hosts[h].name);
                let mut c = Container::new(name, mac, sn.host(used[si]), sn, h);
                c.ping_size = self.scenario.workload.ping_size;
                self.containers.push(c);
                self.hosts[h].containers.push(idx as u32);
                // Equal subnets listed twice are one subnet.
                let g = subnets.iter().position(|&o| o == sn).expect("listed");
                if self.subnet_members.len() <= g {
                    self.subnet_members.resize(g + 1, Vec::new());
                }
                self.subnet_of.push((g as u32, self.subnet_members[g].len() as u32));
                self.subnet_members[g].push(idx as u32);
                if self.active(idx) {
                    self.schedule_work(idx as u32);
                }
            }
        }
    }

    /// Whether container `i` runs the periodic workload: a fraction `active` of them, spread
    /// evenly over the containers.
    pub(super) fn active(&self, i: usize) -> bool {
        let a = self.scenario.workload.active;
        a >= 1.0 || ((i + 1) as f64 * a).floor() > (i as f64 * a).floor()
    }

    pub(super) fn schedule_work(&mut self, c: u32) {
        let w = &self.scenario.workload;
        let start = w.start.0;
        for (iv, kind) in [
            (w.ping_interval, Work::Ping),
            (w.udp_interval, Work::Udp),
            (w.broadcast_interval, Work::Broadcast),
            (w.cross_subnet_interval, Work::Cross),
        ] {
            let us = iv.0.as_micros() as u64;
            if us > 0 {
                let phase = below(&mut self.work_rng, us) + 1;
                self.push(Instant::ZERO + start + Duration::from_micros(phase), Ev::Work { container: c, kind });
            }
        }
    }

    pub(super) fn container_sent(&mut self, c: u32, frame: Vec<u8>) {
        let h = self.containers[c as usize].host as u32;
        if !self.hosts[h as usize].running() {
            return;
        }
        match self.hosts[h as usize].bridge.forward(Port::Container(c as usize), &frame) {
            Out::Drop => {}
            Out::One(Port::Router) => self.capture(h, &frame),
            Out::One(Port::Container(o)) => self.deliver_to_container(o as u32, &frame),
            Out::Flood => {
                let unicast = frame[0] & 1 == 0;
                if unicast {
                    self.checker.on_flood(self.now, &frame);
                }
                let mut k = 0;
                while let Some(&o) = self.hosts[h as usize].containers.get(k) {
                    if o != c {
                        self.deliver_to_container(o, &frame);
                    }
                    k += 1;
                }
                self.capture(h, &frame);
            }
        }
    }

    pub(super) fn capture(&mut self, h: u32, frame: &[u8]) {
        let now = self.now;
        let Some(r) = self.hosts[h as usize].router.as_mut() else { return };
        if self.checker.safety() {
            let before = *r.stats();
            r.handle_frame(now, frame);
            let after = *r.stats();
            self.checker.on_capture_accounting(now, h, &before, &after);
        } else {
            r.handle_frame(now, frame);
        }
        self.trace.record(now.as_micros(), 9, h, hash_bytes(frame), || {
            format!("{{\"t\":{},\"ev\":\"capture\",\"host\":{h},\"len\":{}}}", now.as_micros(), frame.len())
        });
        self.drain(h);
    }

    pub(super) fn router_injected(&mut self, h: u32, frame: &[u8]) {
        match self.hosts[h as usize].bridge.forward(Port::Router, frame) {
            Out::Drop | Out::One(Port::Router) => {}
            Out::One(Port::Container(o)) => self.deliver_to_container(o as u32, frame),
            Out::Flood => {
                let unicast = frame[0] & 1 == 0;
                if unicast {
                    self.checker.on_flood(self.now, frame);
                }
                let mut k = 0;
                while let Some(&o) = self.hosts[h as usize].containers.get(k) {
                    self.deliver_to_container(o, frame);
                    k += 1;
                }
            }
        }
    }

    pub(super) fn deliver_to_container(&mut self, c: u32, frame: &[u8]) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.out_frames);
        let received = self.containers[c as usize].receive(frame, &mut self.ids, &mut out);
        self.checker.on_container(now, c, &self.containers[c as usize], frame, received);
        for f in out.drain(..) {
            self.container_sent(c, f);
        }
        self.out_frames = out;
    }

    pub(super) fn on_work(&mut self, c: u32, kind: Work) {
        let w = &self.scenario.workload;
        let interval = match kind {
            Work::Ping => w.ping_interval,
            Work::Udp => w.udp_interval,
            Work::Broadcast => w.broadcast_interval,
            Work::Cross => w.cross_subnet_interval,
        }
        .0;
        let next = self.now + interval;
        self.push(next, Ev::Work { container: c, kind });
        let h = self.containers[c as usize].host;
        if !self.hosts[h].running() {
            return;
        }
        let mut out = Vec::new();
        let now = self.now;
        let target = match kind {
            Work::Broadcast => {
                self.containers[c as usize].broadcast(&mut self.ids, &mut out);
                None
            }
            Work::Cross => {
                let sn = self.containers[c as usize].subnet;
                let others: Vec<u32> =
                    (0..self.containers.len() as u32).filter(|&o| self.containers[o as usize].subnet != sn).collect();
                (!others.is_empty()).then(|| others[below(&mut self.work_rng, others.len() as u64) as usize])
            }
            Work::Ping | Work::Udp => {
                // A random other member of our subnet.
                let (g, at) = self.subnet_of[c as usize];
                let members = &self.subnet_members[g as usize];
                (members.len() > 1).then(|| {
                    let k = below(&mut self.work_rng, members.len() as u64 - 1) as usize;
                    members[if k < at as usize { k } else { k + 1 }]
                })
            }
        };
        if let Some(o) = target {
            let ip = self.containers[o as usize].ip;
            let me = &mut self.containers[c as usize];
            if kind == Work::Udp {
                me.send_udp(ip, &mut self.ids, &mut out);
            } else {
                let seq = me.ping(now, ip, &mut self.ids, &mut out);
                // A ping to another subnet is never answered: it is not judged.
                if kind == Work::Ping {
                    self.checker.on_workload_ping(now, c, o, seq);
                }
            }
        }
        for f in out {
            self.container_sent(c, f);
        }
    }

    /// Container `c` pings container `o` for liveness probe `i`.
    pub(crate) fn probe(&mut self, c: u32, o: u32, i: usize) {
        let ip = self.containers[o as usize].ip;
        let now = self.now;
        let mut out = Vec::new();
        let seq = self.containers[c as usize].ping(now, ip, &mut self.ids, &mut out);
        self.checker.register_probe(now, c, seq, i);
        for f in out {
            self.container_sent(c, f);
        }
    }
}
