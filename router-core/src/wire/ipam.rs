//! The body of the allocator's gossip message (control message type 10).
//!
//! ```text
//! range      4 bytes network address, 1 byte prefix length (0..=32)
//! votes      u16 count, then per vote:
//!              name 6 | promised round u32, proposer 6 | accepted flag u8 (0 or 1)
//!              [accepted round u32, proposer 6 | creator name 6, life u32]
//! ring       flag u8 (0 or 1) [creator name 6, life u32 | block bits u8]
//! blocks     u16 count, then per block: index u16 | version u32 | owner name 6, life u32
//! infos      u16 count, then per peer:
//!              owner name 6, life u32 | version u32 | free addresses u32 | free blocks u32 |
//!              flags u8 (bit 0: a wanted subnet follows; bit 1: retired; others 0)
//!              [network 4 bytes, prefix u8]
//! ```
//! Blocks are only meaningful with a ring; an index outside the ring, a prefix over 32, or a
//! flag other than 0 or 1 is a decoding error.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{DecodeError, Put, Reader};
use crate::ipam::{Ballot, Block, Owner, PeerInfo, RingId, Vote};

/// Most bytes of entries put in one message (the rest of the body is headers).
pub const IPAM_ROOM: usize = super::control::BODY_MAX - 64;
/// Encoded size of one vote with an accepted value.
pub const VOTE_LEN: usize = 6 + 10 + 1 + 10 + 10;
/// Encoded size of one block.
pub const BLOCK_LEN: usize = 2 + 4 + 10;
/// Info flag: a wanted subnet follows.
const INFO_WANT: u8 = 0x01;
/// Info flag: this life has ended (its successor, the same peer with a new life, says so).
const INFO_RETIRED: u8 = 0x02;
/// Encoded size of one info with a wanted subnet.
pub const INFO_LEN: usize = 10 + 4 + 4 + 4 + 1 + 5;

/// Allocator state one peer sends another: all of it, or what changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpamUpdate {
    /// The sender's allocation range.
    pub range: Ipv4Net,
    /// Paxos votes (sent only while the sender has no ring).
    pub votes: Vec<Vote>,
    /// The sender's ring, when it has one.
    pub ring: Option<RingId>,
    /// Blocks of that ring, by index.
    pub blocks: Vec<(u16, Block)>,
    /// Peers' published allocator state.
    pub infos: Vec<PeerInfo>,
}

fn net(r: &mut Reader<'_>, what: &'static str) -> Result<Ipv4Net, DecodeError> {
    let addr = Ipv4Addr::from(r.array::<4>(what)?);
    let len = r.u8(what)?;
    Ipv4Net::new(addr, len).map_err(|_| DecodeError::Invalid(what))
}

fn put_net(out: &mut Vec<u8>, n: Ipv4Net) {
    out.extend_from_slice(&n.addr().octets());
    out.put_u8(n.prefix_len());
}

fn flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid(what)),
    }
}

fn owner(r: &mut Reader<'_>, what: &'static str) -> Result<Owner, DecodeError> {
    Ok(Owner { name: r.name(what)?, life: r.u32(what)? })
}

fn put_owner(out: &mut Vec<u8>, o: Owner) {
    out.extend_from_slice(&o.name.0);
    out.put_u32(o.life);
}

fn ballot(r: &mut Reader<'_>, what: &'static str) -> Result<Ballot, DecodeError> {
    Ok(Ballot { round: r.u32(what)?, proposer: r.name(what)? })
}

fn put_ballot(out: &mut Vec<u8>, b: Ballot) {
    out.put_u32(b.round);
    out.extend_from_slice(&b.proposer.0);
}

impl IpamUpdate {
    /// Decodes a body (after the type byte).
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<IpamUpdate, DecodeError> {
        let range = net(r, "ipam range")?;
        let mut u = IpamUpdate { range, ..IpamUpdate::default() };
        for _ in 0..r.u16("ipam vote count")? {
            let name = r.name("ipam vote")?;
            let promised = ballot(r, "ipam vote")?;
            let accepted =
                if flag(r, "ipam vote flag")? { Some((ballot(r, "ipam vote")?, owner(r, "ipam vote")?)) } else { None };
            u.votes.push(Vote { name, promised, accepted });
        }
        if flag(r, "ipam ring flag")? {
            let creator = owner(r, "ipam ring creator")?;
            let block_bits = r.u8("ipam block bits")?;
            let ring = RingId::new(creator, range);
            if ring.block_bits != block_bits {
                return Err(DecodeError::Invalid("ipam block bits"));
            }
            u.ring = Some(ring);
        }
        let blocks = usize::from(r.u16("ipam block count")?);
        let limit = u.ring.map_or(0, |g| g.blocks());
        for _ in 0..blocks {
            let i = r.u16("ipam block")?;
            if usize::from(i) >= limit {
                return Err(DecodeError::Invalid("ipam block index"));
            }
            let version = r.u32("ipam block")?;
            u.blocks.push((i, Block { version, owner: owner(r, "ipam block")? }));
        }
        for _ in 0..r.u16("ipam info count")? {
            let owner = owner(r, "ipam info")?;
            let version = r.u32("ipam info")?;
            let free = r.u32("ipam info")?;
            let free_blocks = r.u32("ipam info")?;
            let flags = r.u8("ipam info flags")?;
            if flags & !(INFO_WANT | INFO_RETIRED) != 0 {
                return Err(DecodeError::Invalid("ipam info flags"));
            }
            let want = if flags & INFO_WANT != 0 { Some(net(r, "ipam want")?) } else { None };
            let retired = flags & INFO_RETIRED != 0;
            u.infos.push(PeerInfo { owner, version, free, free_blocks, want, retired });
        }
        Ok(u)
    }

    /// Appends the body (after the type byte).
    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        put_net(out, self.range);
        out.put_u16(u16::try_from(self.votes.len()).expect("split by the sender"));
        for v in &self.votes {
            out.extend_from_slice(&v.name.0);
            put_ballot(out, v.promised);
            match v.accepted {
                None => out.put_u8(0),
                Some((b, o)) => {
                    out.put_u8(1);
                    put_ballot(out, b);
                    put_owner(out, o);
                }
            }
        }
        match self.ring {
            None => out.put_u8(0),
            Some(g) => {
                out.put_u8(1);
                put_owner(out, g.creator);
                out.put_u8(g.block_bits);
            }
        }
        out.put_u16(u16::try_from(self.blocks.len()).expect("split by the sender"));
        for &(i, b) in &self.blocks {
            out.put_u16(i);
            out.put_u32(b.version);
            put_owner(out, b.owner);
        }
        out.put_u16(u16::try_from(self.infos.len()).expect("split by the sender"));
        for p in &self.infos {
            put_owner(out, p.owner);
            out.put_u32(p.version);
            out.put_u32(p.free);
            out.put_u32(p.free_blocks);
            let retired = if p.retired { INFO_RETIRED } else { 0 };
            match p.want {
                None => out.put_u8(retired),
                Some(n) => {
                    out.put_u8(INFO_WANT | retired);
                    put_net(out, n);
                }
            }
        }
    }

    /// Splits into messages that each fit [`IPAM_ROOM`] (every one carries the range and ring).
    pub fn split(self) -> Vec<IpamUpdate> {
        let mut out = Vec::new();
        let head = IpamUpdate { range: self.range, ring: self.ring, ..IpamUpdate::default() };
        let mut cur = head.clone();
        let mut size = 0;
        let mut room = |cur: &mut IpamUpdate, size: &mut usize, len: usize| {
            if *size + len > IPAM_ROOM {
                out.push(core::mem::replace(cur, head.clone()));
                *size = 0;
            }
            *size += len;
        };
        for v in self.votes {
            room(&mut cur, &mut size, VOTE_LEN);
            cur.votes.push(v);
        }
        for b in self.blocks {
            room(&mut cur, &mut size, BLOCK_LEN);
            cur.blocks.push(b);
        }
        for p in self.infos {
            room(&mut cur, &mut size, INFO_LEN);
            cur.infos.push(p);
        }
        out.push(cur);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerName;
    use crate::wire::control::{split_frame, Message, BODY_MAX};
    use proptest::prelude::*;

    fn name(n: u8) -> PeerName {
        PeerName([2, 0, 0, 0, 0, n])
    }

    #[rustfmt::skip]
    const SMALL: &[u8] = &[
        0, 0, 0, 85,                          // length
        10,                                   // type: ipam
        10, 32, 0, 0, 12,                     // range 10.32.0.0/12
        0, 1,                                 // one vote
        2, 0, 0, 0, 0, 1,                     //   name
        0, 0, 0, 1, 2, 0, 0, 0, 0, 1,         //   promised round 1 by ..:01
        0,                                    //   nothing accepted
        1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 9, 10,  // ring created by ..:01 life 9, blocks of 2^10
        0, 1,                                 // one block
        0, 3, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 5, // index 3, version 2, owner ..:01 life 5
        0, 1,                                 // one info
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //   owner
        0, 0, 0, 7, 0, 0, 0, 100, 0, 0, 0, 1, //   version 7, 100 free, 1 free block
        1, 10, 32, 1, 0, 24,                  //   wants 10.32.1.0/24
    ];

    fn small() -> IpamUpdate {
        let range: Ipv4Net = "10.32.0.0/12".parse().unwrap();
        let o = Owner { name: name(1), life: 5 };
        IpamUpdate {
            range,
            votes: vec![Vote { name: name(1), promised: Ballot { round: 1, proposer: name(1) }, accepted: None }],
            ring: Some(RingId::new(Owner { name: name(1), life: 9 }, range)),
            blocks: vec![(3, Block { version: 2, owner: o })],
            infos: vec![PeerInfo {
                owner: o,
                version: 7,
                free: 100,
                free_blocks: 1,
                want: Some("10.32.1.0/24".parse().unwrap()),
                retired: false,
            }],
        }
    }

    #[test]
    fn matches_the_static_bytes() {
        let mut out = Vec::new();
        Message::Ipam(small()).emit(&mut out);
        assert_eq!(out, SMALL);
        assert_eq!(Message::parse(&SMALL[4..]), Ok(Message::Ipam(small())));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for cut in 5..SMALL.len() {
            assert!(Message::parse(&SMALL[4..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = SMALL.to_vec();
        bad[9] = 33; // prefix length
        assert!(Message::parse(&bad[4..]).is_err());
        let mut bad = SMALL.to_vec();
        bad[4 + 1 + 5 + 2 + 16] = 2; // accepted flag
        assert!(Message::parse(&bad[4..]).is_err());
        let mut bad = SMALL.to_vec();
        bad[4 + 1 + 5 + 2 + 17 + 11] = 11; // block bits that do not match the range
        assert!(Message::parse(&bad[4..]).is_err());
        let mut bad = SMALL.to_vec();
        bad[4 + 1 + 5 + 2 + 17 + 12 + 2] = 0x10; // block index 4099 beyond 1,024 blocks
        assert!(Message::parse(&bad[4..]).is_err());
    }

    proptest! {
        #[test]
        fn large_updates_split_into_messages_that_fit(votes in 0usize..3000, blocks in 0usize..1025, infos in 0usize..3000) {
            let mut u = small();
            u.votes = vec![Vote { name: name(1), promised: Ballot::default(), accepted: Some((Ballot::default(), Owner { name: name(2), life: 1 })) }; votes];
            u.blocks = (0..blocks).map(|i| (i as u16, Block { version: 1, owner: Owner { name: name(3), life: 0 } })).collect();
            u.infos = vec![u.infos[0]; infos];
            let parts = u.clone().split();
            let mut back = IpamUpdate { range: u.range, ring: u.ring, ..IpamUpdate::default() };
            for p in parts {
                let mut out = Vec::new();
                Message::Ipam(p.clone()).emit(&mut out);
                prop_assert!(out.len() - 4 <= BODY_MAX);
                prop_assert_eq!(split_frame(&out, BODY_MAX), Ok(Some(out.len() - 4)));
                prop_assert_eq!(Message::parse(&out[4..]), Ok(Message::Ipam(p.clone())));
                back.votes.extend(p.votes);
                back.blocks.extend(p.blocks);
                back.infos.extend(p.infos);
            }
            prop_assert_eq!(back, u);
        }
    }
}
