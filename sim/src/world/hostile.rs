//! Hostile containers: frames from random source MACs, broadcast storms and frames spoofing
//! another container's MAC, sent on top of the container's workload while it misbehaves.

use rand_core::RngCore;

use super::*;
use crate::lan::ID_LEN;
use crate::scenario::HostileKind;

/// An EtherType no container speaks: hostile frames are carried, never answered.
const ETHERTYPE_EXPERIMENTAL: [u8; 2] = [0x88, 0xb5];

impl World {
    /// Schedules the hostile containers' first bursts and tells the checkers who they are.
    pub(super) fn schedule_hostile(&mut self) {
        let n = self.containers.len();
        let mut hostile = vec![false; n];
        let mut spoofs = vec![None; n];
        let mut victims = vec![false; n];
        let mut who = Vec::with_capacity(self.scenario.hostile.len());
        for h in &self.scenario.hostile {
            let c = self.scenario.container_index(&h.container).expect("validated");
            hostile[c] = true;
            let v = h.victim.as_deref().map(|v| self.scenario.container_index(v).expect("validated"));
            if let Some(v) = v {
                spoofs[c] = Some(self.containers[v].mac);
                victims[v] = true;
            }
            who.push((c as u32, v));
        }
        for (i, h) in self.scenario.hostile.iter().enumerate() {
            self.queue.push(Instant::ZERO + h.start.0, Ev::Hostile(i as u32));
        }
        self.hostile_who = who;
        self.checker.set_roles(hostile, spoofs, victims);
    }

    /// One burst of hostile entry `i`, and the next one scheduled.
    pub(super) fn on_hostile(&mut self, i: u32) {
        let h = &self.scenario.hostile[i as usize];
        let (kind, rate, end) = (h.kind, h.rate, h.end.0);
        if self.now >= Instant::ZERO + end {
            return;
        }
        // Up to 1,000 frames a second one at a time; above, a burst every millisecond.
        let (tick, burst) =
            if rate <= 1000 { (Duration::from_secs(1) / rate, 1) } else { (Duration::from_millis(1), rate / 1000) };
        let next = self.now + tick;
        self.push(next, Ev::Hostile(i));
        let (c, victim) = self.hostile_who[i as usize];
        if !self.hosts[self.containers[c as usize].host].running() {
            return;
        }
        let mut out = Vec::with_capacity(burst as usize);
        for _ in 0..burst {
            let f = match kind {
                HostileKind::MacFlood => {
                    let mut r = [0u8; 12];
                    self.hostile_rng.fill_bytes(&mut r);
                    // Unicast addresses, locally administered (never a container's 02:c0:…).
                    r[0] = (r[0] & 0xfc) | 0x02;
                    r[6] = (r[6] & 0xfc) | 0x02;
                    let dst = if self.stats.hostile_frames % 2 == 0 { [0xff; 6] } else { r[..6].try_into().unwrap() };
                    self.raw_frame(dst, r[6..].try_into().unwrap())
                }
                HostileKind::BroadcastStorm => {
                    let mut one = Vec::new();
                    self.containers[c as usize].broadcast(&mut self.ids, &mut one);
                    one.pop().expect("one broadcast")
                }
                HostileKind::CrossSubnet => {
                    let sn = self.containers[c as usize].subnet;
                    let others: Vec<usize> =
                        (0..self.containers.len()).filter(|&o| self.containers[o].subnet != sn).collect();
                    if others.is_empty() {
                        continue;
                    }
                    let o = others[below(&mut self.hostile_rng, others.len() as u64) as usize];
                    let (mac, ip) = (self.containers[o].mac, self.containers[o].ip);
                    self.containers[c as usize].udp_to(mac, ip, &mut self.ids)
                }
                HostileKind::Spoof => {
                    let v = victim.expect("validated");
                    let (g, _) = self.subnet_of[c as usize];
                    let members = &self.subnet_members[g as usize];
                    let k = below(&mut self.hostile_rng, members.len() as u64) as usize;
                    let to = members[k] as usize;
                    let dst = if to == c as usize || to == v { [0xff; 6] } else { self.containers[to].mac.0 };
                    self.raw_frame(dst, self.containers[v].mac.0)
                }
            };
            self.stats.hostile_frames += 1;
            out.push(f);
        }
        for f in out {
            self.container_sent(c, f);
        }
    }

    /// A minimum-size frame of the experimental EtherType, ending in a fresh frame id.
    fn raw_frame(&mut self, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ETHERTYPE_EXPERIMENTAL);
        f.resize(60 - ID_LEN, 0);
        f.extend_from_slice(&self.ids.fresh().to_be_bytes());
        f
    }
}
