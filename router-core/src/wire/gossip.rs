//! Bodies of the topology gossip messages.
//!
//! ```text
//! Summary:  count u32 | hash u64                      (FNV-1a over every digest entry, in name order)
//! Digest:   lo name[6] | hi name[6] | count u16 | count x (name[6] uid u64 version u64)
//! Update:   count u16 | count x PeerEntry
//! PeerEntry: name[6] uid u64 version u64 | nick_len u8 nick | conn_count u16 | conn_count x ConnInfo
//! ConnInfo:  peer[6] | flags u8 (bit0 established, bit1 outbound, others 0) | addr (family u8: 0 none, 4, 6; ip; port u16)
//! ```
//! Lists are strictly ascending by name, so every value has exactly one encoding.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::{opt_addr_len, DecodeError, Put, Reader};
use crate::peer::{PeerName, PeerUid};

/// Anti-entropy summary: equal summaries mean equal views (up to hash collisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of peers in the sender's view.
    pub count: u32,
    /// [`DigestHasher`] over the sender's whole digest.
    pub hash: u64,
}

impl Summary {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Summary { count: r.u32("summary count")?, hash: r.u64("summary hash")? })
    }
    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.put_u32(self.count);
        out.put_u64(self.hash);
    }
}

/// One peer's version, as carried in a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DigestEntry {
    /// The peer.
    pub name: PeerName,
    /// Its incarnation.
    pub uid: PeerUid,
    /// Its version.
    pub version: u64,
}

/// Encoded length of a [`DigestEntry`].
pub const DIGEST_ENTRY_LEN: usize = 6 + 8 + 8;
/// Most entries one digest message carries.
pub const DIGEST_ENTRIES_MAX: usize = (super::control::BODY_MAX - 1 - 14) / DIGEST_ENTRY_LEN;

/// The sender's versions for every peer whose name lies in `lo..=hi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// First name covered.
    pub lo: PeerName,
    /// Last name covered.
    pub hi: PeerName,
    /// Entries, strictly ascending by name, all within `lo..=hi`.
    pub entries: Vec<DigestEntry>,
}

impl Digest {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let lo = r.name("digest lo")?;
        let hi = r.name("digest hi")?;
        if lo > hi {
            return Err(DecodeError::Invalid("digest range"));
        }
        let count = usize::from(r.u16("digest count")?);
        if count * DIGEST_ENTRY_LEN > r.remaining() {
            return Err(DecodeError::Truncated("digest entries"));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let e = DigestEntry {
                name: r.name("digest name")?,
                uid: PeerUid(r.u64("digest uid")?),
                version: r.u64("digest version")?,
            };
            if e.name < lo || e.name > hi || entries.last().is_some_and(|p: &DigestEntry| p.name >= e.name) {
                return Err(DecodeError::Invalid("digest order"));
            }
            entries.push(e);
        }
        Ok(Digest { lo, hi, entries })
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.lo.0);
        out.extend_from_slice(&self.hi.0);
        out.put_u16(u16::try_from(self.entries.len()).expect("digest chunks hold at most DIGEST_ENTRIES_MAX"));
        for e in &self.entries {
            out.extend_from_slice(&e.name.0);
            out.put_u64(e.uid.0);
            out.put_u64(e.version);
        }
    }
}

/// 64-bit FNV-1a over digest entries, fed in name order.
#[derive(Debug, Clone, Copy)]
pub struct DigestHasher(u64);

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl DigestHasher {
    /// Feeds one entry.
    pub fn add(&mut self, e: &DigestEntry) {
        let mut h = self.0;
        let (uid, version) = (e.uid.0.to_be_bytes(), e.version.to_be_bytes());
        for &b in e.name.0.iter().chain(&uid).chain(&version) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// One of a peer's connections, as it advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnInfo {
    /// The peer at the other end.
    pub peer: PeerName,
    /// UDP heartbeats are confirmed both ways on this connection.
    pub established: bool,
    /// The advertising peer dialled this connection.
    pub outbound: bool,
    /// Where the other end accepts control connections, as far as the advertiser knows.
    pub addr: Option<SocketAddr>,
    /// The largest UDP payload the advertiser has verified to pass to the other end, once it
    /// has (the path MTU of that direction, less the IP and UDP headers).
    pub mtu: Option<u16>,
}

const CONN_ESTABLISHED: u8 = 0x01;
const CONN_OUTBOUND: u8 = 0x02;
const CONN_MTU: u8 = 0x04;
const CONN_MIN_LEN: usize = 6 + 1 + 1;
const ENTRY_MIN_LEN: usize = 6 + 8 + 8 + 1 + 2;

/// One peer's entry in the topology: who it is and whom it is connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerEntry {
    /// The peer.
    pub name: PeerName,
    /// Its incarnation.
    pub uid: PeerUid,
    /// Bumped by the peer on every change of its connections.
    pub version: u64,
    /// Its nickname.
    pub nickname: String,
    /// Its connections, strictly ascending by peer name.
    pub conns: Vec<ConnInfo>,
}

impl PeerEntry {
    /// The digest entry for this peer.
    pub fn digest(&self) -> DigestEntry {
        DigestEntry { name: self.name, uid: self.uid, version: self.version }
    }

    /// Encoded length in an [`Update`].
    pub fn encoded_len(&self) -> usize {
        let nick = super::truncate_utf8(&self.nickname, super::control::NICKNAME_MAX).len();
        ENTRY_MIN_LEN
            + nick
            + self.conns.iter().map(|c| 7 + 2 * usize::from(c.mtu.is_some()) + opt_addr_len(c.addr)).sum::<usize>()
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let name = r.name("entry name")?;
        let uid = PeerUid(r.u64("entry uid")?);
        let version = r.u64("entry version")?;
        let nickname = r.short_str("entry nickname")?;
        if nickname.len() > super::control::NICKNAME_MAX {
            return Err(DecodeError::TooLong("entry nickname"));
        }
        let count = usize::from(r.u16("entry conn count")?);
        if count * CONN_MIN_LEN > r.remaining() {
            return Err(DecodeError::Truncated("entry conns"));
        }
        let mut conns: Vec<ConnInfo> = Vec::with_capacity(count);
        for _ in 0..count {
            let peer = r.name("conn peer")?;
            let flags = r.u8("conn flags")?;
            if flags & !(CONN_ESTABLISHED | CONN_OUTBOUND | CONN_MTU) != 0 {
                return Err(DecodeError::Invalid("conn flags"));
            }
            let mtu = if flags & CONN_MTU != 0 { Some(r.u16("conn mtu")?) } else { None };
            let addr = r.opt_addr("conn addr")?;
            if conns.last().is_some_and(|p| p.peer >= peer) || peer == name {
                return Err(DecodeError::Invalid("conn order"));
            }
            conns.push(ConnInfo {
                peer,
                established: flags & CONN_ESTABLISHED != 0,
                outbound: flags & CONN_OUTBOUND != 0,
                addr,
                mtu,
            });
        }
        Ok(PeerEntry { name, uid, version, nickname, conns })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.name.0);
        out.put_u64(self.uid.0);
        out.put_u64(self.version);
        out.put_short_str(super::truncate_utf8(&self.nickname, super::control::NICKNAME_MAX));
        out.put_u16(u16::try_from(self.conns.len()).expect("connection count bounded by the connection limit"));
        for c in &self.conns {
            out.extend_from_slice(&c.peer.0);
            let mut flags = 0;
            if c.established {
                flags |= CONN_ESTABLISHED;
            }
            if c.outbound {
                flags |= CONN_OUTBOUND;
            }
            if c.mtu.is_some() {
                flags |= CONN_MTU;
            }
            out.put_u8(flags);
            if let Some(m) = c.mtu {
                out.put_u16(m);
            }
            out.put_opt_addr(c.addr);
        }
    }
}

/// Topology entries, strictly ascending by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// The entries (shared: the same entry goes out over many connections and may sit in
    /// many routers' views; see [`crate::share`]).
    pub entries: Vec<Arc<PeerEntry>>,
}

/// Room for entries in one update message: the body limit less the type byte and count.
pub const UPDATE_ROOM: usize = super::control::BODY_MAX - 1 - 2;

impl Update {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = usize::from(r.u16("update count")?);
        if count * ENTRY_MIN_LEN > r.remaining() {
            return Err(DecodeError::Truncated("update entries"));
        }
        let mut entries: Vec<Arc<PeerEntry>> = Vec::with_capacity(count);
        for _ in 0..count {
            let e = PeerEntry::parse(r)?;
            if entries.last().is_some_and(|p| p.name >= e.name) {
                return Err(DecodeError::Invalid("update order"));
            }
            entries.push(Arc::new(e));
        }
        Ok(Update { entries })
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.put_u16(u16::try_from(self.entries.len()).expect("updates are chunked below 65536 entries"));
        for e in &self.entries {
            e.emit(out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::control::Message;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    #[rustfmt::skip]
    const UPDATE: &[u8] = &[
        0, 0, 0, 51,            // frame length
        7,                      // type: gossip update
        0, 1,                   // one entry
        0, 0, 0, 0, 0, 1,       // name
        0, 0, 0, 0, 0, 0, 0, 9, // uid
        0, 0, 0, 0, 0, 0, 0, 3, // version
        1, b'a',                // nickname
        0, 2,                   // two connections
        0, 0, 0, 0, 0, 2, 0x03, 4, 10, 0, 0, 2, 0x1a, 0x7f, // -> ..:02 established outbound 10.0.0.2:6783
        0, 0, 0, 0, 0, 3, 0x00, 0,                          // -> ..:03 no address
    ];

    fn update() -> Message {
        Message::GossipUpdate(Update {
            entries: vec![Arc::new(PeerEntry {
                name: PeerName::from_u64(1),
                uid: PeerUid(9),
                version: 3,
                nickname: "a".into(),
                conns: vec![
                    ConnInfo {
                        peer: PeerName::from_u64(2),
                        established: true,
                        outbound: true,
                        addr: Some(SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2).into(), 6783)),
                        mtu: None,
                    },
                    ConnInfo {
                        peer: PeerName::from_u64(3),
                        established: false,
                        outbound: false,
                        addr: None,
                        mtu: None,
                    },
                ],
            })],
        })
    }

    #[test]
    fn update_matches_the_static_bytes() {
        let mut out = Vec::new();
        update().emit(&mut out);
        assert_eq!(out, UPDATE);
        assert_eq!(Message::parse(&UPDATE[4..]), Ok(update()));
        let Message::GossipUpdate(u) = update() else { unreachable!() };
        assert_eq!(u.entries[0].encoded_len(), UPDATE.len() - 7);
    }

    #[rustfmt::skip]
    const DIGEST: &[u8] = &[
        0, 0, 0, 37, 6,
        0, 0, 0, 0, 0, 0,       // lo
        0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, // hi
        0, 1,
        0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2,
    ];

    #[test]
    fn digest_and_summary_match_their_static_bytes() {
        let d = Message::GossipDigest(Digest {
            lo: PeerName([0; 6]),
            hi: PeerName([0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]),
            entries: vec![DigestEntry { name: PeerName::from_u64(5), uid: PeerUid(1), version: 2 }],
        });
        let mut out = Vec::new();
        d.emit(&mut out);
        assert_eq!(out, DIGEST);
        assert_eq!(Message::parse(&DIGEST[4..]), Ok(d));

        let s = Message::GossipSummary(Summary { count: 2, hash: 0x0102 });
        let bytes = [0, 0, 0, 13, 5, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 2];
        let mut out = Vec::new();
        s.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(Message::parse(&bytes[4..]), Ok(s));
    }

    #[test]
    fn unsorted_or_out_of_range_lists_are_refused() {
        let mut bad = DIGEST.to_vec();
        bad[5..11].copy_from_slice(&[0, 0, 0, 0, 0, 6]); // lo above the entry
        assert_eq!(Message::parse(&bad[4..]), Err(DecodeError::Invalid("digest order")));
        let mut bad = UPDATE.to_vec();
        bad[52] = 1; // second conn names a peer below the first
        assert_eq!(Message::parse(&bad[4..]), Err(DecodeError::Invalid("conn order")));
        let mut bad = UPDATE.to_vec();
        bad[39] = 0x29; // unknown flag bits would not survive a re-encode
        assert_eq!(Message::parse(&bad[4..]), Err(DecodeError::Invalid("conn flags")));
        let mut huge = UPDATE[..7].to_vec();
        huge[5] = 0xff;
        assert_eq!(Message::parse(&huge[4..]), Err(DecodeError::Truncated("update entries")));
    }

    pub(crate) fn arb_conn() -> impl Strategy<Value = ConnInfo> {
        let addr = prop_oneof![
            Just(None),
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| Some(SocketAddr::new(Ipv4Addr::from(ip).into(), p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                p,
                0,
                0
            )))),
        ];
        (0u64..64, any::<bool>(), any::<bool>(), addr, proptest::option::of(any::<u16>())).prop_map(
            |(p, established, outbound, addr, mtu)| ConnInfo {
                peer: PeerName::from_u64(p),
                established,
                outbound,
                addr,
                mtu,
            },
        )
    }

    pub(crate) fn arb_entry() -> impl Strategy<Value = PeerEntry> {
        (0u64..64, 0u64..4, 0u64..8, "[a-z]{0,8}", proptest::collection::vec(arb_conn(), 0..6)).prop_map(
            |(n, uid, version, nickname, mut conns)| {
                let name = PeerName::from_u64(n);
                conns.retain(|c| c.peer != name);
                conns.sort_by_key(|c| c.peer);
                conns.dedup_by_key(|c| c.peer);
                PeerEntry { name, uid: PeerUid(uid), version, nickname, conns }
            },
        )
    }

    proptest! {
        #[test]
        fn update_round_trips(mut entries in proptest::collection::vec(arb_entry(), 0..20)) {
            entries.sort_by_key(|e| e.name);
            entries.dedup_by_key(|e| e.name);
            let m = Message::GossipUpdate(Update { entries: entries.into_iter().map(Arc::new).collect() });
            let mut out = Vec::new();
            m.emit(&mut out);
            prop_assert_eq!(Message::parse(&out[4..]), Ok(m));
        }

        #[test]
        fn digest_round_trips(names in proptest::collection::btree_set(0u64..(1 << 48), 0..50), v in any::<u64>()) {
            let entries: Vec<_> = names.iter().map(|&n| DigestEntry {
                name: PeerName::from_u64(n), uid: PeerUid(n ^ v), version: v }).collect();
            let lo = entries.first().map_or(PeerName([0; 6]), |e| e.name);
            let hi = entries.last().map_or(PeerName([0; 6]), |e| e.name);
            let m = Message::GossipDigest(Digest { lo, hi, entries });
            let mut out = Vec::new();
            m.emit(&mut out);
            prop_assert_eq!(Message::parse(&out[4..]), Ok(m));
        }
    }
}
