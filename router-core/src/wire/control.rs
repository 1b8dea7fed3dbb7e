//! Control messages on the TCP connection, after the [preamble](super::preamble).
//!
//! Each message is framed as
//! ```text
//! 0..4   body length L, big-endian u32, 1 <= L <= BODY_MAX
//! 4      message type
//! 5..4+L type-specific body
//! ```
//! A length outside the bounds is a protocol error and closes the connection.

use super::gossip::{Digest, Summary, Update};
use super::ipam::IpamUpdate;
use super::{DecodeError, Put, Reader};
use crate::peer::{PeerName, PeerUid};

/// Length of the frame header (the body length).
pub const FRAME_HEADER_LEN: usize = 4;
/// Largest body (type byte included) a peer may send.
pub const BODY_MAX: usize = 65_536;
/// Largest sealed record body: a body and its AEAD tag.
pub const SEALED_BODY_MAX: usize = BODY_MAX + crate::crypto::TAG_LEN;
/// Longest nickname carried; longer ones are cut.
pub const NICKNAME_MAX: usize = 64;

const T_HANDSHAKE: u8 = 1;
const T_REFUSE: u8 = 2;
const T_HEARTBEAT: u8 = 3;
const T_UDP_ACK: u8 = 4;
const T_GOSSIP_SUMMARY: u8 = 5;
const T_GOSSIP_DIGEST: u8 = 6;
const T_GOSSIP_UPDATE: u8 = 7;
const T_CONFIRM: u8 = 8;
const T_PMTU_ACK: u8 = 9;
const T_IPAM: u8 = 10;

/// Handshake flag: the sender requires a password (encrypted sessions); the handshake then
/// ends with the sender's PAKE message.
pub const FLAG_PASSWORD: u8 = 0x01;
/// Handshake flag: the sender dials because it was told to (a peer given at launch or by
/// `connect`), not because gossip named us. A router at its connection limit makes room for
/// such a connection by closing one that neither side was told to make.
pub const FLAG_GIVEN: u8 = 0x02;
/// Length of the PAKE message (SPAKE2 over Ed25519: a side byte and a point).
pub const PAKE_LEN: usize = crate::crypto::PAKE_MSG_LEN;
/// Length of a key confirmation.
pub const CONFIRM_LEN: usize = crate::crypto::CONFIRM_LEN;

/// The first message each side sends after the preamble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The sender's name.
    pub name: PeerName,
    /// The sender's incarnation.
    pub uid: PeerUid,
    /// The sender's nickname (at most [`NICKNAME_MAX`] bytes of UTF-8).
    pub nickname: String,
    /// The UDP port the sender receives data and heartbeats on.
    pub udp_port: u16,
    /// The TCP port the sender accepts control connections on (for discovery).
    pub tcp_port: u16,
    /// A random value naming this connection; UDP heartbeats to the sender must echo it.
    pub session: u64,
    /// Flag bits; unknown bits are ignored. [`FLAG_PASSWORD`] is set exactly when `pake` is
    /// present (emitting sets it from `pake`).
    pub flags: u8,
    /// The sender's SPAKE2 message, when it requires a password.
    pub pake: Option<[u8; PAKE_LEN]>,
}

/// Why a connection was refused; sent in a `Refuse` message just before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The other end did not open with our magic.
    BadMagic,
    /// The two version ranges do not overlap.
    NoCommonVersion,
    /// The connection leads back to ourselves.
    ConnectToSelf,
    /// Another peer (a different incarnation) uses our name.
    NameCollision,
    /// A connection between this pair already exists; this one loses.
    Duplicate,
    /// The peer name is reserved or otherwise unusable.
    InvalidName,
    /// The receiver has reached its connection limit.
    ConnectionLimit,
    /// The peer broke the protocol (bad message, wrong order, oversize frame).
    ProtocolError,
    /// One side requires a password and the other does not, or the passwords differ.
    PasswordMismatch,
    /// A peer at the sender's address failed the password check moments ago; try later.
    TooManyAttempts,
    /// A code this build does not know.
    Unknown(u8),
}

impl RefuseReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            RefuseReason::BadMagic => 1,
            RefuseReason::NoCommonVersion => 2,
            RefuseReason::ConnectToSelf => 3,
            RefuseReason::NameCollision => 4,
            RefuseReason::Duplicate => 5,
            RefuseReason::InvalidName => 6,
            RefuseReason::ConnectionLimit => 7,
            RefuseReason::ProtocolError => 8,
            RefuseReason::PasswordMismatch => 9,
            RefuseReason::TooManyAttempts => 10,
            RefuseReason::Unknown(c) => c,
        }
    }

    /// Decodes a wire code; unknown codes are kept.
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => RefuseReason::BadMagic,
            2 => RefuseReason::NoCommonVersion,
            3 => RefuseReason::ConnectToSelf,
            4 => RefuseReason::NameCollision,
            5 => RefuseReason::Duplicate,
            6 => RefuseReason::InvalidName,
            7 => RefuseReason::ConnectionLimit,
            8 => RefuseReason::ProtocolError,
            9 => RefuseReason::PasswordMismatch,
            10 => RefuseReason::TooManyAttempts,
            c => RefuseReason::Unknown(c),
        }
    }
}

impl core::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            RefuseReason::BadMagic => "the other end is not a weave router (bad magic)",
            RefuseReason::NoCommonVersion => "no protocol version in common",
            RefuseReason::ConnectToSelf => "connection to ourselves",
            RefuseReason::NameCollision => "another peer uses our name",
            RefuseReason::Duplicate => "duplicate connection",
            RefuseReason::InvalidName => "invalid peer name",
            RefuseReason::ConnectionLimit => "connection limit reached",
            RefuseReason::ProtocolError => "protocol error",
            RefuseReason::PasswordMismatch => {
                "password mismatch (one side has no password, or the passwords differ): give every peer the same password"
            }
            RefuseReason::TooManyAttempts => "a password check from this address failed moments ago; retrying later",
            RefuseReason::Unknown(c) => return write!(f, "unknown refusal code {c}"),
        };
        f.write_str(s)
    }
}

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Identity and ports; see [`Handshake`].
    Handshake(Handshake),
    /// The sender refuses the connection and will close it.
    Refuse(RefuseReason),
    /// Keeps the connection alive; carries nothing.
    Heartbeat,
    /// "Your UDP heartbeat `seq` reached me": proves the sender-to-receiver UDP path.
    UdpAck {
        /// The sequence number of the heartbeat being acknowledged.
        seq: u32,
    },
    /// Anti-entropy, step 1: a hash over every (name, uid, version) the sender holds.
    GossipSummary(Summary),
    /// Anti-entropy, step 2: the versions the sender holds for a range of names.
    GossipDigest(Digest),
    /// Topology entries the receiver may lack.
    GossipUpdate(Update),
    /// Key confirmation (password sessions): proves the sender derived the same keys. Every
    /// later message from the sender is sealed.
    Confirm([u8; CONFIRM_LEN]),
    /// "Your path MTU probe `id` reached me": a datagram of its size passes from the
    /// receiver to the sender.
    PmtuAck {
        /// The id of the probe being acknowledged.
        id: u32,
    },
    /// Address allocator state (see [`super::ipam`]).
    Ipam(IpamUpdate),
}

impl Message {
    /// Decodes one message body (type byte included, length prefix excluded).
    pub fn parse(body: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(body);
        let msg = match r.u8("message type")? {
            T_HANDSHAKE => {
                let name = r.name("handshake name")?;
                let uid = PeerUid(r.u64("handshake uid")?);
                let udp_port = r.u16("handshake udp port")?;
                let tcp_port = r.u16("handshake tcp port")?;
                let session = r.u64("handshake session")?;
                let flags = r.u8("handshake flags")?;
                let nickname = r.short_str("handshake nickname")?;
                if nickname.len() > NICKNAME_MAX {
                    return Err(DecodeError::TooLong("nickname"));
                }
                let pake = if flags & FLAG_PASSWORD != 0 { Some(r.array("handshake pake message")?) } else { None };
                Message::Handshake(Handshake { name, uid, nickname, udp_port, tcp_port, session, flags, pake })
            }
            T_REFUSE => Message::Refuse(RefuseReason::from_code(r.u8("refuse reason")?)),
            T_HEARTBEAT => Message::Heartbeat,
            T_UDP_ACK => Message::UdpAck { seq: r.u32("ack seq")? },
            T_GOSSIP_SUMMARY => Message::GossipSummary(Summary::parse(&mut r)?),
            T_GOSSIP_DIGEST => Message::GossipDigest(Digest::parse(&mut r)?),
            T_GOSSIP_UPDATE => Message::GossipUpdate(Update::parse(&mut r)?),
            T_CONFIRM => Message::Confirm(r.array("confirmation")?),
            T_PMTU_ACK => Message::PmtuAck { id: r.u32("probe id")? },
            T_IPAM => Message::Ipam(IpamUpdate::parse(&mut r)?),
            _ => return Err(DecodeError::Invalid("message type")),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Appends the framed message (length prefix included) to `out`.
    ///
    /// Panics if the body exceeds [`BODY_MAX`]; gossip is split by its builders so it never does.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u32(0);
        match self {
            Message::Handshake(h) => {
                out.put_u8(T_HANDSHAKE);
                out.extend_from_slice(&h.name.0);
                out.put_u64(h.uid.0);
                out.put_u16(h.udp_port);
                out.put_u16(h.tcp_port);
                out.put_u64(h.session);
                let pw = if h.pake.is_some() { FLAG_PASSWORD } else { 0 };
                out.put_u8(h.flags & !FLAG_PASSWORD | pw);
                out.put_short_str(super::truncate_utf8(&h.nickname, NICKNAME_MAX));
                if let Some(p) = &h.pake {
                    out.extend_from_slice(p);
                }
            }
            Message::Refuse(r) => {
                out.put_u8(T_REFUSE);
                out.put_u8(r.code());
            }
            Message::Heartbeat => out.put_u8(T_HEARTBEAT),
            Message::UdpAck { seq } => {
                out.put_u8(T_UDP_ACK);
                out.put_u32(*seq);
            }
            Message::PmtuAck { id } => {
                out.put_u8(T_PMTU_ACK);
                out.put_u32(*id);
            }
            Message::GossipSummary(s) => {
                out.put_u8(T_GOSSIP_SUMMARY);
                s.emit(out);
            }
            Message::GossipDigest(d) => {
                out.put_u8(T_GOSSIP_DIGEST);
                d.emit(out);
            }
            Message::GossipUpdate(u) => {
                out.put_u8(T_GOSSIP_UPDATE);
                u.emit(out);
            }
            Message::Confirm(c) => {
                out.put_u8(T_CONFIRM);
                out.extend_from_slice(c);
            }
            Message::Ipam(u) => {
                out.put_u8(T_IPAM);
                u.emit(out);
            }
        }
        let body = out.len() - start - FRAME_HEADER_LEN;
        assert!(body <= BODY_MAX, "control message of {body} bytes exceeds BODY_MAX");
        let len = u32::try_from(body).expect("bounded by BODY_MAX");
        out[start..start + FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// Looks for one complete frame at the start of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some(n))`: the body is `buf[4..4 + n]`.
/// `Err`: the length is out of bounds (over `max`: [`BODY_MAX`], or [`SEALED_BODY_MAX`] once
/// records are sealed) and the stream cannot be resynchronised.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<usize>, DecodeError> {
    let Some(head) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(head.try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Err(DecodeError::Invalid("frame length"));
    }
    if len > max {
        return Err(DecodeError::TooLong("frame length"));
    }
    Ok((buf.len() >= FRAME_HEADER_LEN + len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[rustfmt::skip]
    const HANDSHAKE: [u8; 4 + 1 + 6 + 8 + 2 + 2 + 8 + 1 + 1 + 2 + 33] = [
        0, 0, 0, 64,                    // length
        1,                              // type: handshake
        0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, // name
        0, 0, 0, 0, 0, 0, 0, 7,         // uid
        0x1a, 0x7f,                     // udp port 6783
        0x1a, 0x7f,                     // tcp port 6783
        0, 0, 0, 0, 0, 0, 0x12, 0x34,   // session
        0x01,                           // flags: password
        2, b'h', b'1',                  // nickname
        0x41, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,  // pake message (side A, point)
        9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    ];

    fn handshake() -> Message {
        Message::Handshake(Handshake {
            name: PeerName([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]),
            uid: PeerUid(7),
            nickname: "h1".into(),
            udp_port: 6783,
            tcp_port: 6783,
            session: 0x1234,
            flags: FLAG_PASSWORD,
            pake: Some(core::array::from_fn(|i| if i == 0 { 0x41 } else { 9 })),
        })
    }

    #[test]
    fn handshake_matches_the_static_bytes() {
        assert_eq!(split_frame(&HANDSHAKE, BODY_MAX), Ok(Some(64)));
        assert_eq!(Message::parse(&HANDSHAKE[4..]), Ok(handshake()));
        let mut out = Vec::new();
        handshake().emit(&mut out);
        assert_eq!(out, HANDSHAKE);
    }

    #[test]
    fn small_messages_match_their_static_bytes() {
        let confirm: &[u8] = &[
            0, 0, 0, 33, 8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
            7, 7,
        ];
        let cases: [(Message, &[u8]); 5] = [
            (Message::Confirm([7; 32]), confirm),
            (Message::Refuse(RefuseReason::Duplicate), &[0, 0, 0, 2, 2, 5]),
            (Message::Heartbeat, &[0, 0, 0, 1, 3]),
            (Message::UdpAck { seq: 258 }, &[0, 0, 0, 5, 4, 0, 0, 1, 2]),
            (Message::PmtuAck { id: 259 }, &[0, 0, 0, 5, 9, 0, 0, 1, 3]),
        ];
        for (msg, bytes) in cases {
            let mut out = Vec::new();
            msg.emit(&mut out);
            assert_eq!(out, bytes);
            assert_eq!(Message::parse(&bytes[4..]), Ok(msg));
        }
    }

    #[test]
    fn framing_waits_for_whole_frames_and_refuses_bad_lengths() {
        assert_eq!(split_frame(&HANDSHAKE[..3], BODY_MAX), Ok(None));
        assert_eq!(split_frame(&HANDSHAKE[..20], BODY_MAX), Ok(None));
        assert_eq!(split_frame(&[0, 0, 0, 0], BODY_MAX), Err(DecodeError::Invalid("frame length")));
        assert_eq!(split_frame(&[0, 1, 0, 1], BODY_MAX), Err(DecodeError::TooLong("frame length")));
        assert_eq!(split_frame(&[0, 1, 0, 1], SEALED_BODY_MAX), Ok(None), "a sealed record may carry a tag more");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(Message::parse(&[]).is_err());
        assert!(Message::parse(&[99]).is_err());
        assert_eq!(Message::parse(&[3, 0]), Err(DecodeError::TrailingBytes));
        assert!(Message::parse(&HANDSHAKE[4..HANDSHAKE.len() - 1]).is_err());
        let mut bad_utf8 = HANDSHAKE;
        bad_utf8[HANDSHAKE.len() - 34] = 0xff;
        assert!(Message::parse(&bad_utf8[4..]).is_err());
        let mut no_pake = HANDSHAKE;
        no_pake[4 + 1 + 6 + 8 + 2 + 2 + 8] = 0;
        assert_eq!(Message::parse(&no_pake[4..]), Err(DecodeError::TrailingBytes));
        assert!(Message::parse(&[8; 32]).is_err(), "a confirmation is 32 bytes");
    }

    proptest! {
        #[test]
        fn handshake_round_trips(name in any::<[u8; 6]>(), uid in any::<u64>(), nick in "[a-z0-9é]{0,20}",
                                 udp in any::<u16>(), tcp in any::<u16>(), session in any::<u64>(), flags in any::<u8>(),
                                 pake in proptest::option::of(any::<[u8; 33]>())) {
            let flags = flags & !FLAG_PASSWORD | if pake.is_some() { FLAG_PASSWORD } else { 0 };
            let m = Message::Handshake(Handshake { name: PeerName(name), uid: PeerUid(uid), nickname: nick,
                udp_port: udp, tcp_port: tcp, session, flags, pake });
            let mut out = Vec::new();
            m.emit(&mut out);
            prop_assert_eq!(split_frame(&out, BODY_MAX), Ok(Some(out.len() - 4)));
            prop_assert_eq!(Message::parse(&out[4..]), Ok(m));
        }

        #[test]
        fn small_messages_round_trip(code in any::<u8>(), seq in any::<u32>()) {
            for m in [Message::Refuse(RefuseReason::from_code(code)), Message::UdpAck { seq }, Message::PmtuAck { id: seq }, Message::Heartbeat] {
                let mut out = Vec::new();
                m.emit(&mut out);
                prop_assert_eq!(Message::parse(&out[4..]), Ok(m));
            }
        }
    }
}
