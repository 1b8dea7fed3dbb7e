//! Counters: every frame and datagram is accounted for, delivered or dropped with a reason.

use serde::Serialize;

/// Why a frame or datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[non_exhaustive]
pub enum DropReason {
    /// A datagram or captured frame that could not be decoded (counted per datagram/frame).
    Malformed,
    /// A captured frame whose source MAC is a group address.
    BadSourceMac,
    /// A frame too long to carry (over 65535 bytes).
    Oversize,
    /// The hop limit ran out.
    HopLimit,
    /// No route to the destination peer.
    NoRoute,
    /// A frames datagram from an address that belongs to no connection (counted per frame).
    UnknownSender,
    /// A frames datagram whose (source, sequence number) was seen before, or is too old to
    /// tell (a routing change in flight, or an underlay duplicate).
    Duplicate,
    /// The output queue was full.
    QueueFull,
    /// A UDP heartbeat for no connection of ours, or with the wrong session.
    BadHeartbeat,
    /// An encrypted datagram, and we have no password.
    Encrypted,
    /// A plaintext datagram, and we require encryption.
    Plaintext,
    /// An encrypted datagram that failed authentication: forged, tampered with, truncated, or
    /// from no connection of ours.
    Unauthenticated,
    /// An encrypted datagram whose counter was accepted before or is behind the replay window.
    Replayed,
    /// A frame that claims to come from ourselves.
    Looped,
    /// A frame larger than the path towards its destination carries, which could be neither
    /// answered with an ICMP error nor fragmented (not IP, a broadcast or multicast, an IPv6
    /// path under 1,280 bytes), or a relayed datagram too big for the next link.
    TooBig,
    /// A frame from the local bridge to flood (broadcast, multicast or unknown unicast) beyond
    /// its source's flood budget, or beyond all local sources' together.
    FloodLimited,
    /// A frame from a peer whose source MAC has just moved onto our bridge: sent before the
    /// move, it arrived late (see `MOVE_BACK_HOLD`); injected, it would steal the MAC from
    /// the container on the bridge.
    StaleSource,
}

impl DropReason {
    /// Every reason, for exporting counters.
    pub const ALL: [DropReason; 17] = [
        DropReason::Malformed,
        DropReason::BadSourceMac,
        DropReason::Oversize,
        DropReason::HopLimit,
        DropReason::NoRoute,
        DropReason::UnknownSender,
        DropReason::Duplicate,
        DropReason::QueueFull,
        DropReason::BadHeartbeat,
        DropReason::Encrypted,
        DropReason::Plaintext,
        DropReason::Unauthenticated,
        DropReason::Replayed,
        DropReason::Looped,
        DropReason::TooBig,
        DropReason::FloodLimited,
        DropReason::StaleSource,
    ];

    /// A short snake_case name, as used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadSourceMac => "bad_source_mac",
            DropReason::Oversize => "oversize",
            DropReason::HopLimit => "hop_limit",
            DropReason::NoRoute => "no_route",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::Duplicate => "duplicate",
            DropReason::QueueFull => "queue_full",
            DropReason::BadHeartbeat => "bad_heartbeat",
            DropReason::Encrypted => "encrypted",
            DropReason::Plaintext => "plaintext",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::Replayed => "replayed",
            DropReason::Looped => "looped",
            DropReason::TooBig => "too_big",
            DropReason::FloodLimited => "flood_limited",
            DropReason::StaleSource => "stale_source",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&r| r == self).expect("ALL lists every reason")
    }
}

/// Drop counters by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops([u64; DropReason::ALL.len()]);

impl Drops {
    /// The count for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn add(&mut self, r: DropReason, n: u64) {
        self.0[r.index()] += n;
    }
}

impl Serialize for Drops {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(DropReason::ALL.len()))?;
        for r in DropReason::ALL {
            m.serialize_entry(r.as_str(), &self.get(r))?;
        }
        m.end()
    }
}

/// Counters of everything the router did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames captured from the local bridge.
    pub frames_captured: u64,
    /// Captured frames whose destination is local (the bridge delivers them; not sent).
    pub frames_local: u64,
    /// Frames injected into the local bridge.
    pub frames_injected: u64,
    /// Captured frames sent as unicast towards their destination's peer.
    pub frames_sent: u64,
    /// Captured frames flooded along our broadcast tree (to however many peers it has).
    pub frames_flooded: u64,
    /// Frames forwarded for other peers (unicast relay or flood forwarding).
    pub frames_relayed: u64,
    /// UDP datagrams handed to the driver (data and heartbeats).
    pub datagrams_sent: u64,
    /// UDP datagrams received.
    pub datagrams_received: u64,
    /// UDP payload bytes sent.
    pub udp_bytes_sent: u64,
    /// UDP payload bytes received.
    pub udp_bytes_received: u64,
    /// Control-stream bytes sent.
    pub tcp_bytes_sent: u64,
    /// Control-stream bytes received.
    pub tcp_bytes_received: u64,
    /// Gossip bytes sent (summary, digest and update messages).
    pub gossip_bytes_sent: u64,
    /// Gossip update messages sent.
    pub gossip_updates_sent: u64,
    /// Topology entries merged from gossip.
    pub gossip_entries_merged: u64,
    /// Allocator gossip received by a router that runs no allocator.
    pub ipam_ignored: u64,
    /// Entries for new peers refused because the topology holds `peers_max` peers.
    pub gossip_entries_refused: u64,
    /// MACs learned.
    pub macs_learned: u64,
    /// MACs that moved to another owner.
    pub macs_moved: u64,
    /// MACs expired.
    pub macs_expired: u64,
    /// Connections closed for a protocol error or a malformed control message.
    pub control_errors: u64,
    /// Unicast route recomputations.
    pub route_recomputes: u64,
    /// Links that became established (first time or after a failure).
    pub links_established: u64,
    /// Links lost because a probed neighbour stayed silent while we sent data.
    pub links_lost_probe: u64,
    /// Links lost because no heartbeat arrived within the UDP timeout.
    pub links_lost_heartbeat: u64,
    /// Links lost because the peer stopped acknowledging our heartbeats.
    pub links_lost_ack: u64,
    /// Handshakes that failed because the passwords differ or only one side has one.
    pub password_mismatches: u64,
    /// MACs not learned, or not moved: the table, or their owner's share of it, was full.
    pub macs_refused: u64,
    /// Control connections this router dialled.
    pub dials: u64,
    /// Discovered targets dropped after failing several tries in a row (they rest before
    /// discovery picks them again).
    pub discovered_rested: u64,
    /// MACs not moved back to where they had just left, by a frame that was no announcement
    /// (one sent before the move, arriving late).
    pub macs_stale: u64,
    /// Path MTU probes sent.
    pub pmtu_probes_sent: u64,
    /// Smaller path MTUs the driver reported (EMSGSIZE, ICMP from the kernel).
    pub pmtu_reports: u64,
    /// Frames too big for their path answered with an ICMP "fragmentation needed" (IPv4) or
    /// "packet too big" (IPv6) to the sending container.
    pub icmp_too_big_sent: u64,
    /// IPv4 frames without "don't fragment" that were fragmented to fit their path.
    pub frames_fragmented: u64,
    /// Drops by reason.
    pub drops: Drops,
}

impl Stats {
    /// Counts `n` frames dropped for `r`. Out of line and cold: drops are rare, and inlined
    /// into a loop (`poll_transmit`'s) the compiler kept their counters in registers across
    /// it, reading and writing back a cold line of this struct on every call.
    #[cold]
    #[inline(never)]
    pub(crate) fn drop(&mut self, r: DropReason, n: u64) {
        self.drops.add(r, n);
    }

    pub(crate) fn count_link_loss(&mut self, r: crate::conn::LinkReason) {
        use crate::conn::LinkReason;
        match r {
            LinkReason::ProbeTimeout => self.links_lost_probe += 1,
            LinkReason::HeartbeatTimeout => self.links_lost_heartbeat += 1,
            LinkReason::AckTimeout => self.links_lost_ack += 1,
            LinkReason::Confirmed => {}
        }
    }

    /// Adds another router's counters to these (for totals over many routers).
    pub fn accumulate(&mut self, o: &Stats) {
        let Stats {
            frames_captured,
            frames_local,
            frames_injected,
            frames_sent,
            frames_flooded,
            frames_relayed,
            datagrams_sent,
            datagrams_received,
            udp_bytes_sent,
            udp_bytes_received,
            tcp_bytes_sent,
            tcp_bytes_received,
            gossip_bytes_sent,
            gossip_updates_sent,
            gossip_entries_merged,
            gossip_entries_refused,
            ipam_ignored,
            macs_learned,
            macs_moved,
            macs_expired,
            control_errors,
            route_recomputes,
            links_established,
            links_lost_probe,
            links_lost_heartbeat,
            links_lost_ack,
            password_mismatches,
            macs_refused,
            macs_stale,
            discovered_rested,
            dials,
            pmtu_probes_sent,
            pmtu_reports,
            icmp_too_big_sent,
            frames_fragmented,
            drops,
        } = o;
        self.macs_refused += macs_refused;
        self.macs_stale += macs_stale;
        self.discovered_rested += discovered_rested;
        self.dials += dials;
        self.pmtu_probes_sent += pmtu_probes_sent;
        self.pmtu_reports += pmtu_reports;
        self.icmp_too_big_sent += icmp_too_big_sent;
        self.frames_fragmented += frames_fragmented;
        self.password_mismatches += password_mismatches;
        self.links_established += links_established;
        self.links_lost_probe += links_lost_probe;
        self.links_lost_heartbeat += links_lost_heartbeat;
        self.links_lost_ack += links_lost_ack;
        self.frames_captured += frames_captured;
        self.frames_local += frames_local;
        self.frames_injected += frames_injected;
        self.frames_sent += frames_sent;
        self.frames_flooded += frames_flooded;
        self.frames_relayed += frames_relayed;
        self.datagrams_sent += datagrams_sent;
        self.datagrams_received += datagrams_received;
        self.udp_bytes_sent += udp_bytes_sent;
        self.udp_bytes_received += udp_bytes_received;
        self.tcp_bytes_sent += tcp_bytes_sent;
        self.tcp_bytes_received += tcp_bytes_received;
        self.gossip_bytes_sent += gossip_bytes_sent;
        self.gossip_updates_sent += gossip_updates_sent;
        self.gossip_entries_merged += gossip_entries_merged;
        self.gossip_entries_refused += gossip_entries_refused;
        self.ipam_ignored += ipam_ignored;
        self.macs_learned += macs_learned;
        self.macs_moved += macs_moved;
        self.macs_expired += macs_expired;
        self.control_errors += control_errors;
        self.route_recomputes += route_recomputes;
        for (a, b) in self.drops.0.iter_mut().zip(drops.0) {
            *a += b;
        }
    }
}
