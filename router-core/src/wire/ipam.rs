//! The body of the allocator's gossip message (control message type 10).
//!
//! ```text
//! range      4 bytes network address, 1 byte prefix length (0..=32)
//! votes      u16 count, then per vote:
//!              name 6 | promised round u32, proposer 6 | accepted flag u8 (0 or 1)
//!              [accepted round u32, proposer 6 | creator name 6, life u32]
//! ring       flag u8 (0 or 1) [creator name 6, life u32 | block bits u8]
//! blocks     u16 count, then per block: index u16 | entry
//! infos      u16 count, then per peer:
//!              owner name 6, life u32 | version u32 | free addresses u32 | free blocks u32 |
//!              flags u8 (bit 0: a wanted subnet follows; bit 1: retired; bit 2: an
//!              activation request follows; others 0)
//!              [network 4 bytes, prefix u8] [index u16 | entry]
//! agreed     flag u8 (0 or 1) [slot u32 | voters u8 count, owners (name 6, life u32) |
//!              active u16 count, per block: index u16 | entry |
//!              taken u16 count, per block: index u16 | entry]
//! slot votes u16 count, then per vote:
//!              voter name 6, life u32 | slot u32 | promised round u32, proposer name 6, life u32 |
//!              accepted flag u8 (0 or 1) [accepted round u32, proposer name 6, life u32 | decree]
//! decree     voters u8 count, owners | changes u16 count, then per change: kind u8
//!              1 (activate): index u16 | entry
//!              2 (reclaim): gone name 6, life u32 | to name 6, life u32 | u16 count, indices u16
//! entry      epoch u32 | version u32 | owner name 6, life u32
//! ```
//! Blocks, agreed state and slot votes are only meaningful with a ring; a block index outside
//! the ring, a prefix over 32, a flag other than 0 or 1 or an unknown change kind is a
//! decoding error.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{DecodeError, Put, Reader};
use crate::ipam::{Agreed, Ballot, Block, Change, Decree, Owner, PeerInfo, RingId, SlotBallot, SlotVote, Vote};

/// Most bytes of entries put in one message (the rest of the body is headers).
pub const IPAM_ROOM: usize = super::control::BODY_MAX - 64;
/// Encoded size of one vote with an accepted value.
pub const VOTE_LEN: usize = 6 + 10 + 1 + 10 + 10;
/// Encoded size of one block.
pub const BLOCK_LEN: usize = 2 + ENTRY_LEN;
/// Encoded size of a block's entry.
const ENTRY_LEN: usize = 4 + 4 + 10;
/// Info flag: a wanted subnet follows.
const INFO_WANT: u8 = 0x01;
/// Info flag: this life has ended (its successor, the same peer with a new life, says so).
const INFO_RETIRED: u8 = 0x02;
/// Info flag: an activation request follows.
const INFO_ACTIVATE: u8 = 0x04;
/// Encoded size of one info with a wanted subnet and an activation request.
pub const INFO_LEN: usize = 10 + 4 + 4 + 4 + 1 + 5 + BLOCK_LEN;
/// Change kind: activate a block.
const CHANGE_ACTIVATE: u8 = 1;
/// Change kind: reclaim a gone peer's blocks.
const CHANGE_RECLAIM: u8 = 2;

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
    /// The sender's agreed state (sent alone in its message when split).
    pub agreed: Option<Agreed>,
    /// Votes of the agreed log.
    pub slot_votes: Vec<SlotVote>,
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

fn entry(r: &mut Reader<'_>, what: &'static str) -> Result<Block, DecodeError> {
    Ok(Block { epoch: r.u32(what)?, version: r.u32(what)?, owner: owner(r, what)? })
}

fn put_entry(out: &mut Vec<u8>, b: Block) {
    out.put_u32(b.epoch);
    out.put_u32(b.version);
    put_owner(out, b.owner);
}

/// A block index inside a ring of `limit` blocks.
fn index(r: &mut Reader<'_>, limit: usize, what: &'static str) -> Result<u16, DecodeError> {
    let i = r.u16(what)?;
    if usize::from(i) >= limit {
        return Err(DecodeError::Invalid(what));
    }
    Ok(i)
}

fn indexed(r: &mut Reader<'_>, limit: usize, what: &'static str) -> Result<(u16, Block), DecodeError> {
    Ok((index(r, limit, what)?, entry(r, what)?))
}

fn put_indexed(out: &mut Vec<u8>, (i, b): (u16, Block)) {
    out.put_u16(i);
    put_entry(out, b);
}

fn owners(r: &mut Reader<'_>, what: &'static str) -> Result<std::collections::BTreeSet<Owner>, DecodeError> {
    (0..r.u8(what)?).map(|_| owner(r, what)).collect()
}

fn put_owners(out: &mut Vec<u8>, os: &std::collections::BTreeSet<Owner>) {
    out.put_u8(u8::try_from(os.len()).expect("voters are few"));
    for o in os {
        put_owner(out, *o);
    }
}

fn slot_ballot(r: &mut Reader<'_>, what: &'static str) -> Result<SlotBallot, DecodeError> {
    Ok(SlotBallot { round: r.u32(what)?, proposer: owner(r, what)? })
}

fn put_slot_ballot(out: &mut Vec<u8>, b: SlotBallot) {
    out.put_u32(b.round);
    put_owner(out, b.proposer);
}

fn decree(r: &mut Reader<'_>, limit: usize) -> Result<Decree, DecodeError> {
    let voters = owners(r, "ipam decree voters")?;
    let mut changes = Vec::new();
    for _ in 0..r.u16("ipam decree")? {
        changes.push(match r.u8("ipam change kind")? {
            CHANGE_ACTIVATE => {
                let (block, entry) = indexed(r, limit, "ipam activation")?;
                Change::Activate { block, entry }
            }
            CHANGE_RECLAIM => {
                let gone = owner(r, "ipam reclaim")?;
                let to = owner(r, "ipam reclaim")?;
                let blocks = (0..r.u16("ipam reclaim")?)
                    .map(|_| index(r, limit, "ipam reclaim block"))
                    .collect::<Result<_, _>>()?;
                Change::Reclaim { gone, to, blocks }
            }
            _ => return Err(DecodeError::Invalid("ipam change kind")),
        });
    }
    Ok(Decree { changes, voters })
}

fn put_decree(out: &mut Vec<u8>, d: &Decree) {
    put_owners(out, &d.voters);
    out.put_u16(u16::try_from(d.changes.len()).expect("decrees are bounded"));
    for c in &d.changes {
        match c {
            Change::Activate { block, entry } => {
                out.put_u8(CHANGE_ACTIVATE);
                put_indexed(out, (*block, *entry));
            }
            Change::Reclaim { gone, to, blocks } => {
                out.put_u8(CHANGE_RECLAIM);
                put_owner(out, *gone);
                put_owner(out, *to);
                out.put_u16(u16::try_from(blocks.len()).expect("at most the ring's blocks"));
                for &i in blocks {
                    out.put_u16(i);
                }
            }
        }
    }
}

/// Encoded size of a decree.
fn decree_len(d: &Decree) -> usize {
    let changes: usize = d
        .changes
        .iter()
        .map(|c| match c {
            Change::Activate { .. } => 1 + BLOCK_LEN,
            Change::Reclaim { blocks, .. } => 1 + 20 + 2 + 2 * blocks.len(),
        })
        .sum();
    1 + 10 * d.voters.len() + 2 + changes
}

/// Encoded size of a slot vote.
fn slot_vote_len(v: &SlotVote) -> usize {
    10 + 4 + 14 + 1 + v.accepted.as_ref().map_or(0, |(_, d)| 14 + decree_len(d))
}

/// Encoded size of an agreed state.
fn agreed_len(a: &Agreed) -> usize {
    4 + 1 + 10 * a.voters.len() + 2 + BLOCK_LEN * a.active.len() + 2 + BLOCK_LEN * a.taken.len()
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
            u.blocks.push(indexed(r, limit, "ipam block index")?);
        }
        for _ in 0..r.u16("ipam info count")? {
            let owner = owner(r, "ipam info")?;
            let version = r.u32("ipam info")?;
            let free = r.u32("ipam info")?;
            let free_blocks = r.u32("ipam info")?;
            let flags = r.u8("ipam info flags")?;
            if flags & !(INFO_WANT | INFO_RETIRED | INFO_ACTIVATE) != 0 {
                return Err(DecodeError::Invalid("ipam info flags"));
            }
            let want = if flags & INFO_WANT != 0 { Some(net(r, "ipam want")?) } else { None };
            let retired = flags & INFO_RETIRED != 0;
            let activate = if flags & INFO_ACTIVATE != 0 { Some(indexed(r, limit, "ipam activation")?) } else { None };
            u.infos.push(PeerInfo { owner, version, free, free_blocks, want, retired, activate });
        }
        if flag(r, "ipam agreed flag")? {
            let slot = r.u32("ipam agreed")?;
            let voters = owners(r, "ipam agreed voters")?;
            let active =
                (0..r.u16("ipam agreed")?).map(|_| indexed(r, limit, "ipam active block")).collect::<Result<_, _>>()?;
            let taken =
                (0..r.u16("ipam agreed")?).map(|_| indexed(r, limit, "ipam taken block")).collect::<Result<_, _>>()?;
            u.agreed = Some(Agreed { slot, voters, active, taken });
        }
        for _ in 0..r.u16("ipam slot vote count")? {
            let voter = owner(r, "ipam slot vote")?;
            let slot = r.u32("ipam slot vote")?;
            let promised = slot_ballot(r, "ipam slot vote")?;
            let accepted = if flag(r, "ipam slot vote flag")? {
                Some((slot_ballot(r, "ipam slot vote")?, decree(r, limit)?))
            } else {
                None
            };
            u.slot_votes.push(SlotVote { voter, slot, promised, accepted });
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
        for &b in &self.blocks {
            put_indexed(out, b);
        }
        out.put_u16(u16::try_from(self.infos.len()).expect("split by the sender"));
        for p in &self.infos {
            put_owner(out, p.owner);
            out.put_u32(p.version);
            out.put_u32(p.free);
            out.put_u32(p.free_blocks);
            let flags = if p.retired { INFO_RETIRED } else { 0 }
                | if p.want.is_some() { INFO_WANT } else { 0 }
                | if p.activate.is_some() { INFO_ACTIVATE } else { 0 };
            out.put_u8(flags);
            if let Some(n) = p.want {
                put_net(out, n);
            }
            if let Some(a) = p.activate {
                put_indexed(out, a);
            }
        }
        match &self.agreed {
            None => out.put_u8(0),
            Some(a) => {
                out.put_u8(1);
                out.put_u32(a.slot);
                put_owners(out, &a.voters);
                for map in [&a.active, &a.taken] {
                    out.put_u16(u16::try_from(map.len()).expect("at most the ring's blocks"));
                    for (&i, &b) in map {
                        put_indexed(out, (i, b));
                    }
                }
            }
        }
        out.put_u16(u16::try_from(self.slot_votes.len()).expect("split by the sender"));
        for v in &self.slot_votes {
            put_owner(out, v.voter);
            out.put_u32(v.slot);
            put_slot_ballot(out, v.promised);
            match &v.accepted {
                None => out.put_u8(0),
                Some((b, d)) => {
                    out.put_u8(1);
                    put_slot_ballot(out, *b);
                    put_decree(out, d);
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
        if let Some(a) = self.agreed {
            // First, whole: at most 2,048 entries of 20 bytes fit one message.
            size = agreed_len(&a);
            cur.agreed = Some(a);
        }
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
        for v in self.slot_votes {
            room(&mut cur, &mut size, slot_vote_len(&v));
            cur.slot_votes.push(v);
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
        0, 0, 0, 253,                         // length
        10,                                   // type: ipam
        10, 32, 0, 0, 12,                     // range 10.32.0.0/12
        0, 1,                                 // one vote
        2, 0, 0, 0, 0, 1,                     //   name
        0, 0, 0, 1, 2, 0, 0, 0, 0, 1,         //   promised round 1 by ..:01
        0,                                    //   nothing accepted
        1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 9, 10,  // ring created by ..:01 life 9, blocks of 2^10
        0, 1,                                 // one block
        0, 3, 0, 0, 0, 0, 0, 0, 0, 2,         //   index 3, epoch 0, version 2,
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //   owner ..:01 life 5
        0, 1,                                 // one info
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //   owner
        0, 0, 0, 7, 0, 0, 0, 100, 0, 0, 0, 1, //   version 7, 100 free, 1 free block
        5, 10, 32, 1, 0, 24,                  //   wants 10.32.1.0/24, and asks to activate
        0, 4, 0, 0, 0, 1, 0, 0, 0, 3,         //   block 4 at epoch 1, version 3,
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //   owned by itself
        1, 0, 0, 0, 2,                        // agreed state after 2 slots
        1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 5,      //   one voter
        0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2,   //   one active block: index 3, epoch 0, version 2,
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //   owner ..:01 life 5
        0, 0,                                 //   nothing taken
        0, 1,                                 // one slot vote
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //   voter
        0, 0, 0, 2,                           //   slot 2
        0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 5, // promised round 1 by the voter
        1,                                    //   accepted:
        0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 5, // that ballot,
        1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 5,      //   a decree: one voter next,
        0, 2,                                 //   two changes:
        1, 0, 4, 0, 0, 0, 1, 0, 0, 0, 3,      //   activate block 4 at epoch 1, version 3,
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //     owner ..:01 life 5;
        2, 2, 0, 0, 0, 0, 2, 0, 0, 0, 6,      //   reclaim from ..:02 life 6
        2, 0, 0, 0, 0, 1, 0, 0, 0, 5,         //     to ..:01 life 5
        0, 1, 0, 7,                           //     block 7
    ];

    fn small() -> IpamUpdate {
        let range: Ipv4Net = "10.32.0.0/12".parse().unwrap();
        let o = Owner { name: name(1), life: 5 };
        let block = Block { epoch: 0, version: 2, owner: o };
        let ask = Block { epoch: 1, version: 3, owner: o };
        let ballot = SlotBallot { round: 1, proposer: o };
        let decree = Decree {
            changes: vec![
                Change::Activate { block: 4, entry: ask },
                Change::Reclaim { gone: Owner { name: name(2), life: 6 }, to: o, blocks: vec![7] },
            ],
            voters: [o].into(),
        };
        IpamUpdate {
            range,
            votes: vec![Vote { name: name(1), promised: Ballot { round: 1, proposer: name(1) }, accepted: None }],
            ring: Some(RingId::new(Owner { name: name(1), life: 9 }, range)),
            blocks: vec![(3, block)],
            infos: vec![PeerInfo {
                owner: o,
                version: 7,
                free: 100,
                free_blocks: 1,
                want: Some("10.32.1.0/24".parse().unwrap()),
                retired: false,
                activate: Some((4, ask)),
            }],
            agreed: Some(Agreed {
                slot: 2,
                voters: [o].into(),
                active: [(3, block)].into(),
                taken: Default::default(),
            }),
            slot_votes: vec![SlotVote { voter: o, slot: 2, promised: ballot, accepted: Some((ballot, decree)) }],
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
        let mut bad = SMALL.to_vec();
        bad[93] = 0x10; // an activation request beyond the ring
        assert!(Message::parse(&bad[4..]).is_err());
        let mut bad = SMALL.to_vec();
        bad[113] = 2; // agreed flag
        assert!(Message::parse(&bad[4..]).is_err());
        let mut bad = SMALL.to_vec();
        bad[211] = 3; // change kind
        assert!(Message::parse(&bad[4..]).is_err());
    }

    proptest! {
        #[test]
        fn large_updates_split_into_messages_that_fit(votes in 0usize..3000, blocks in 0usize..1025, infos in 0usize..3000) {
            let mut u = small();
            u.votes = vec![Vote { name: name(1), promised: Ballot::default(), accepted: Some((Ballot::default(), Owner { name: name(2), life: 1 })) }; votes];
            let entry = Block { epoch: 1, version: 1, owner: Owner { name: name(3), life: 0 } };
            u.blocks = (0..blocks).map(|i| (i as u16, entry)).collect();
            u.infos = vec![u.infos[0]; infos];
            let all: std::collections::BTreeMap<u16, Block> = u.blocks.iter().copied().collect();
            u.agreed = Some(Agreed { slot: 1, voters: u.agreed.unwrap().voters, active: all.clone(), taken: all });
            // The largest decree: every change an activation, or reclaims of every block.
            let mut vote = u.slot_votes[0].clone();
            let decree = &mut vote.accepted.as_mut().unwrap().1;
            decree.changes = if votes % 2 == 0 {
                vec![Change::Activate { block: 1, entry }; crate::ipam::agreed::DECREE_MAX]
            } else {
                vec![Change::Reclaim { gone: entry.owner, to: entry.owner, blocks: (0..1024).collect() }; 2]
            };
            u.slot_votes = vec![vote; votes % 17];
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
                back.slot_votes.extend(p.slot_votes);
                back.agreed = back.agreed.or(p.agreed);
            }
            prop_assert_eq!(back, u);
        }
    }
}
