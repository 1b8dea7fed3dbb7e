//! UDP datagrams: heartbeats and batches of Ethernet frames.
//!
//! ```text
//! 0       version (1)
//! 1       kind: 1 heartbeat, 2 frames, 3 path MTU probe
//! 2       flags: bit0 sealed; bit1 answer requested (frames only: the sending hop heard
//!         nothing from us lately and asks for a heartbeat at once); other bits zero
//! 3       hop limit (frames); heartbeat flags (heartbeats: bit0 reply requested, bit1 ack requested)
//! 4..10   source peer: the heartbeat's sender, or the peer whose bridge captured the frames
//! 10..16  destination peer, or ff:ff:ff:ff:ff:ff to flood along the source's broadcast tree
//! 16..    body
//!
//! heartbeat body: session u64 (the receiver's, from its handshake) | seq u32 |
//!                 echo u32 (the highest seq the sender has received from the receiver)
//! frames body:    seq u64 (the source's datagram number) | one or more of
//!                 (length u16, 14 <= length; Ethernet frame of that length)
//! probe body:     session u64 (the receiver's) | id u32 | zero padding up to the size
//!                 probed; the receiver acknowledges the id over TCP (`PmtuAck`)
//! ```
//! Every router drops a frames datagram whose (source, seq) it has already seen, so a frame
//! passes each peer at most once even while views of the topology disagree.
//! [`Datagram`] is a zero-copy view used on the data path: checking it never allocates.

use super::DecodeError;
use crate::peer::PeerName;

/// The datagram format version.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const HEADER_LEN: usize = 16;
/// Length of the header of a frames datagram (common header and sequence number).
pub const FRAMES_HEADER_LEN: usize = HEADER_LEN + 8;
/// Length of a heartbeat body.
pub const HEARTBEAT_BODY_LEN: usize = 16;
/// Shortest path MTU probe: the common header, the session and the id.
pub const PROBE_MIN_LEN: usize = HEADER_LEN + 12;
/// Heartbeat flag: answer with a heartbeat at once (a probe).
pub const HEARTBEAT_REPLY: u8 = 0x01;
/// Heartbeat flag: the sender's direction is unproven; acknowledge this heartbeat over TCP.
pub const HEARTBEAT_ACK: u8 = 0x02;
/// Per-frame overhead inside a frames datagram.
pub const FRAME_PREFIX_LEN: usize = 2;
/// The shortest Ethernet frame carried (a bare header).
pub const FRAME_MIN: usize = 14;
/// Flag: the datagram is sealed (encrypted and authenticated hop by hop).
pub const FLAG_ENCRYPTED: u8 = 0x01;
/// Flag, frames only: the hop that sent this datagram has heard nothing from us since it
/// began sending; answer at once with a heartbeat, so that it need not probe. Set and cleared
/// by each hop for itself.
pub const FLAG_ANSWER: u8 = 0x02;

mod field {
    pub(super) const VERSION: usize = 0;
    pub(super) const KIND: usize = 1;
    pub(super) const FLAGS: usize = 2;
    pub(super) const HOP_LIMIT: usize = 3;
    pub(super) const SRC: core::ops::Range<usize> = 4..10;
    pub(super) const DST: core::ops::Range<usize> = 10..16;
    pub(super) const SEQ: core::ops::Range<usize> = 16..24;
}

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A UDP heartbeat.
    Heartbeat,
    /// Ethernet frames.
    Frames,
    /// A path MTU probe: padding up to the size whose passage it tests.
    Probe,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Heartbeat => 1,
            Kind::Frames => 2,
            Kind::Probe => 3,
        }
    }
}

/// A view of a datagram over a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Wraps a buffer after checking the header (length, version, kind, flags) and, for a
    /// heartbeat, the body length; frames bodies are checked by [`Datagram::frames`].
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DecodeError::Truncated("datagram header"));
        }
        if b[field::VERSION] != VERSION {
            return Err(DecodeError::Version(b[field::VERSION]));
        }
        let known = if b[field::KIND] == 2 { FLAG_ENCRYPTED | FLAG_ANSWER } else { FLAG_ENCRYPTED };
        if b[field::FLAGS] & !known != 0 {
            return Err(DecodeError::Invalid("datagram flags"));
        }
        match b[field::KIND] {
            1 if b.len() != HEADER_LEN + HEARTBEAT_BODY_LEN => Err(DecodeError::Invalid("heartbeat length")),
            2 if b.len() < FRAMES_HEADER_LEN => Err(DecodeError::Truncated("frames sequence number")),
            3 if b.len() < PROBE_MIN_LEN => Err(DecodeError::Truncated("probe")),
            1..=3 => Ok(Datagram { buffer }),
            _ => Err(DecodeError::Invalid("datagram kind")),
        }
    }

    /// Kind of body.
    pub fn kind(&self) -> Kind {
        match self.buffer.as_ref()[field::KIND] {
            1 => Kind::Heartbeat,
            3 => Kind::Probe,
            _ => Kind::Frames,
        }
    }

    /// Flag bits.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the sending hop asks for a heartbeat at once ([`FLAG_ANSWER`]).
    pub fn answer_requested(&self) -> bool {
        self.flags() & FLAG_ANSWER != 0
    }

    /// Remaining hops.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source peer.
    pub fn src(&self) -> PeerName {
        PeerName(self.buffer.as_ref()[field::SRC].try_into().expect("6 bytes"))
    }

    /// Destination peer.
    pub fn dst(&self) -> PeerName {
        PeerName(self.buffer.as_ref()[field::DST].try_into().expect("6 bytes"))
    }

    /// Everything after the common header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The source's datagram number (frames datagrams only; 0 for heartbeats).
    pub fn seq(&self) -> u64 {
        match self.kind() {
            Kind::Frames => u64::from_be_bytes(self.buffer.as_ref()[field::SEQ].try_into().expect("length checked")),
            Kind::Heartbeat | Kind::Probe => 0,
        }
    }

    /// The heartbeat body, if this is a heartbeat.
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        if self.kind() != Kind::Heartbeat {
            return None;
        }
        let b = self.body();
        Some(Heartbeat {
            session: u64::from_be_bytes(b[..8].try_into().expect("length checked in new_checked")),
            seq: u32::from_be_bytes(b[8..12].try_into().expect("length checked in new_checked")),
            echo: u32::from_be_bytes(b[12..16].try_into().expect("length checked in new_checked")),
            reply: self.buffer.as_ref()[field::HOP_LIMIT] & HEARTBEAT_REPLY != 0,
            ack: self.buffer.as_ref()[field::HOP_LIMIT] & HEARTBEAT_ACK != 0,
        })
    }

    /// The probe's (session, id), if this is a path MTU probe.
    pub fn probe(&self) -> Option<(u64, u32)> {
        if self.kind() != Kind::Probe {
            return None;
        }
        let b = self.body();
        Some((
            u64::from_be_bytes(b[..8].try_into().expect("length checked in new_checked")),
            u32::from_be_bytes(b[8..12].try_into().expect("length checked in new_checked")),
        ))
    }

    /// Checks the whole frames body and returns an iterator over its frames.
    ///
    /// Either every frame is well formed and the iterator yields them all, or nothing is
    /// yielded: a malformed datagram is never half-delivered.
    pub fn frames(&self) -> Result<Frames<'_>, DecodeError> {
        if self.kind() != Kind::Frames {
            return Err(DecodeError::Invalid("datagram kind"));
        }
        let body = &self.buffer.as_ref()[FRAMES_HEADER_LEN..];
        if body.is_empty() {
            return Err(DecodeError::Truncated("frames"));
        }
        let mut rest = body;
        while !rest.is_empty() {
            let Some(head) = rest.get(..FRAME_PREFIX_LEN) else {
                return Err(DecodeError::Truncated("frame length"));
            };
            let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
            if len < FRAME_MIN {
                return Err(DecodeError::Invalid("frame length"));
            }
            rest = rest.get(FRAME_PREFIX_LEN + len..).ok_or(DecodeError::Truncated("frame"))?;
        }
        Ok(Frames { rest: body })
    }
}

impl<'a> Datagram<&'a [u8]> {
    /// [`Datagram::frames`], borrowing the buffer rather than the datagram.
    pub fn into_frames(self) -> Result<Frames<'a>, DecodeError> {
        self.frames()?;
        Ok(Frames { rest: &self.buffer[FRAMES_HEADER_LEN..] })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Datagram<T> {
    /// Rewrites the hop limit (relays decrement it).
    pub fn set_hop_limit(&mut self, hops: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hops;
    }
}

/// Frames of a checked frames datagram.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let head = self.rest.get(..FRAME_PREFIX_LEN)?;
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        let frame = self.rest.get(FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + len)?;
        self.rest = &self.rest[FRAME_PREFIX_LEN + len..];
        Some(frame)
    }
}

/// A heartbeat body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The receiver's session value from its handshake on the matching TCP connection.
    pub session: u64,
    /// Sender's sequence number; the receiver acknowledges it over TCP and echoes it.
    pub seq: u32,
    /// The highest sequence number the sender has received from the receiver (0: none):
    /// proof that the receiver-to-sender direction works.
    pub echo: u32,
    /// A probe: the receiver answers at once with a heartbeat of its own.
    pub reply: bool,
    /// The sender's direction is unproven (or its proof is getting old): the receiver
    /// acknowledges over TCP at once rather than only echoing in its next heartbeat.
    pub ack: bool,
}

/// The common header as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Kind of body that follows.
    pub kind: Kind,
    /// Flag bits.
    pub flags: u8,
    /// Remaining hops.
    pub hop_limit: u8,
    /// Source peer.
    pub src: PeerName,
    /// Destination peer.
    pub dst: PeerName,
    /// The source's datagram number (frames only).
    pub seq: u64,
}

impl Header {
    /// Encoded length: [`FRAMES_HEADER_LEN`] for frames, [`HEADER_LEN`] for heartbeats.
    pub fn encoded_len(&self) -> usize {
        match self.kind {
            Kind::Frames => FRAMES_HEADER_LEN,
            Kind::Heartbeat | Kind::Probe => HEADER_LEN,
        }
    }

    /// Writes the header (with the sequence number, for frames) into the start of `out`.
    pub fn emit(&self, out: &mut [u8]) {
        out[field::VERSION] = VERSION;
        out[field::KIND] = self.kind.code();
        out[field::FLAGS] = self.flags;
        out[field::HOP_LIMIT] = self.hop_limit;
        out[field::SRC].copy_from_slice(&self.src.0);
        out[field::DST].copy_from_slice(&self.dst.0);
        if self.kind == Kind::Frames {
            out[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        }
    }
}

/// Writes a complete heartbeat datagram into `out`, returning its length.
pub fn emit_heartbeat(src: PeerName, dst: PeerName, hb: Heartbeat, out: &mut [u8]) -> usize {
    let flags = if hb.reply { HEARTBEAT_REPLY } else { 0 } | if hb.ack { HEARTBEAT_ACK } else { 0 };
    Header { kind: Kind::Heartbeat, flags: 0, hop_limit: flags, src, dst, seq: 0 }.emit(out);
    out[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&hb.session.to_be_bytes());
    out[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&hb.seq.to_be_bytes());
    out[HEADER_LEN + 12..HEADER_LEN + 16].copy_from_slice(&hb.echo.to_be_bytes());
    HEADER_LEN + HEARTBEAT_BODY_LEN
}

/// Appends a path MTU probe of exactly `len` bytes (at least [`PROBE_MIN_LEN`]) to `out`.
pub fn push_probe(src: PeerName, dst: PeerName, session: u64, id: u32, len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + len.max(PROBE_MIN_LEN), 0);
    Header { kind: Kind::Probe, flags: 0, hop_limit: 0, src, dst, seq: 0 }.emit(&mut out[start..]);
    out[start + HEADER_LEN..start + HEADER_LEN + 8].copy_from_slice(&session.to_be_bytes());
    out[start + HEADER_LEN + 8..start + PROBE_MIN_LEN].copy_from_slice(&id.to_be_bytes());
}

/// Appends one length-prefixed frame to a frames body under construction.
pub fn push_frame(out: &mut Vec<u8>, frame: &[u8]) {
    let len = u16::try_from(frame.len()).expect("frames are bounded by the caller to 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[rustfmt::skip]
    const HEARTBEAT: [u8; 32] = [
        1, 1, 0, 3,                     // version, kind, flags, heartbeat flags: reply and ack requested
        0, 0, 0, 0, 0, 1,
        0, 0, 0, 0, 0, 2,
        0, 0, 0, 0, 0, 0, 0xab, 0xcd,   // session
        0, 0, 0, 7,                     // seq
        0, 0, 0, 5,                     // echo
    ];

    #[test]
    fn heartbeat_matches_the_static_bytes() {
        let d = Datagram::new_checked(&HEARTBEAT[..]).unwrap();
        assert_eq!(d.kind(), Kind::Heartbeat);
        assert_eq!(d.src(), PeerName::from_u64(1));
        assert_eq!(d.dst(), PeerName::from_u64(2));
        let hb = Heartbeat { session: 0xabcd, seq: 7, echo: 5, reply: true, ack: true };
        assert_eq!(d.heartbeat(), Some(hb));
        let mut out = [0u8; 32];
        let n = emit_heartbeat(PeerName::from_u64(1), PeerName::from_u64(2), hb, &mut out);
        assert_eq!(&out[..n], &HEARTBEAT);
    }

    #[rustfmt::skip]
    fn frames_bytes() -> Vec<u8> {
        let mut v = vec![
            1, 2, 0, 9,
            0, 0, 0, 0, 0, 1,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0, 0, 0, 0, 0, 0, 0x01, 0x02,   // seq
            0, 14,
        ];
        v.extend_from_slice(&[0xff; 6]);
        v.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        v
    }

    #[test]
    fn frames_match_the_static_bytes() {
        let bytes = frames_bytes();
        let d = Datagram::new_checked(&bytes[..]).unwrap();
        assert_eq!((d.kind(), d.hop_limit(), d.dst(), d.seq()), (Kind::Frames, 9, PeerName::BROADCAST, 0x0102));
        let frames: Vec<_> = d.frames().unwrap().collect();
        assert_eq!(frames, vec![&bytes[26..]]);

        let mut out = vec![0u8; FRAMES_HEADER_LEN];
        Header {
            kind: Kind::Frames,
            flags: 0,
            hop_limit: 9,
            src: PeerName::from_u64(1),
            dst: PeerName::BROADCAST,
            seq: 0x0102,
        }
        .emit(&mut out);
        push_frame(&mut out, &bytes[26..]);
        assert_eq!(out, bytes);
    }

    #[test]
    fn malformed_datagrams_are_refused_whole() {
        let bytes = frames_bytes();
        let cut = Datagram::new_checked(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(cut.frames().unwrap_err(), DecodeError::Truncated("frame"));
        let empty = Datagram::new_checked(&bytes[..FRAMES_HEADER_LEN]).unwrap();
        assert!(empty.frames().is_err());
        assert!(Datagram::new_checked(&bytes[..FRAMES_HEADER_LEN - 1]).is_err());
        let mut short = bytes.clone();
        short[25] = 3;
        assert!(Datagram::new_checked(&short[..]).unwrap().frames().is_err());
        let mut v = bytes.clone();
        v[0] = 2;
        assert_eq!(Datagram::new_checked(&v[..]).unwrap_err(), DecodeError::Version(2));
        let mut k = bytes.clone();
        k[1] = 4;
        assert!(Datagram::new_checked(&k[..]).is_err());
        assert!(Datagram::new_checked(&HEARTBEAT[..31]).is_err());
        let mut probe = Vec::new();
        push_probe(PeerName::from_u64(1), PeerName::from_u64(2), 9, 7, PROBE_MIN_LEN - 1, &mut probe);
        assert_eq!(probe.len(), PROBE_MIN_LEN, "a probe is never shorter than its fields");
        assert!(Datagram::new_checked(&probe[..PROBE_MIN_LEN - 1]).is_err());
        let mut probe = Vec::new();
        push_probe(PeerName::from_u64(1), PeerName::from_u64(2), 9, 7, 1400, &mut probe);
        let d = Datagram::new_checked(&probe[..]).unwrap();
        assert_eq!((probe.len(), d.kind(), d.probe()), (1400, Kind::Probe, Some((9, 7))));
        assert_eq!(d.frames().unwrap_err(), DecodeError::Invalid("datagram kind"));
    }

    #[test]
    fn only_frames_may_ask_for_an_answer_and_unknown_flags_are_refused() {
        let mut asking = frames_bytes();
        asking[2] = FLAG_ANSWER;
        let d = Datagram::new_checked(&asking[..]).unwrap();
        assert!(d.answer_requested());
        assert!(!Datagram::new_checked(&frames_bytes()[..]).unwrap().answer_requested());
        let mut hb = HEARTBEAT;
        hb[2] = FLAG_ANSWER;
        assert_eq!(Datagram::new_checked(&hb[..]).unwrap_err(), DecodeError::Invalid("datagram flags"));
        for bit in 2..8 {
            let mut f = frames_bytes();
            f[2] = 1 << bit;
            assert!(Datagram::new_checked(&f[..]).is_err(), "flag bit {bit} is unknown");
        }
    }

    proptest! {
        #[test]
        fn frames_round_trip(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 14..200), 1..8),
                             hop in any::<u8>(), src in any::<u64>(), dst in any::<u64>(), seq in any::<u64>()) {
            let mut out = vec![0u8; FRAMES_HEADER_LEN];
            let h = Header { kind: Kind::Frames, flags: 0, hop_limit: hop, src: PeerName::from_u64(src), dst: PeerName::from_u64(dst), seq };
            h.emit(&mut out);
            for f in &frames { push_frame(&mut out, f); }
            let d = Datagram::new_checked(&out[..]).unwrap();
            prop_assert_eq!((d.hop_limit(), d.src(), d.dst(), d.seq()), (hop, h.src, h.dst, seq));
            let got: Vec<Vec<u8>> = d.frames().unwrap().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn heartbeats_round_trip(session in any::<u64>(), seq in any::<u32>(), echo in any::<u32>(), reply in any::<bool>(), ack in any::<bool>()) {
            let mut out = [0u8; 32];
            let hb = Heartbeat { session, seq, echo, reply, ack };
            emit_heartbeat(PeerName::from_u64(1), PeerName::from_u64(2), hb, &mut out);
            prop_assert_eq!(Datagram::new_checked(&out[..]).unwrap().heartbeat(), Some(hb));
        }
    }
}
