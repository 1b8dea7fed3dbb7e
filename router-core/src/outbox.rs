//! Outputs waiting for the driver: one arena of bytes, no allocation per frame once warm.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::crypto::Sealer;
use crate::peer::ConnId;
use crate::wire::control::{Message, FRAME_HEADER_LEN, SEALED_BODY_MAX};
use crate::wire::datagram::{push_frame, Header, Kind, FLAG_ANSWER, FRAMES_HEADER_LEN, HEADER_LEN};

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Inject into the local bridge.
    Bridge,
    /// Write to a TCP control connection.
    Conn(ConnId),
    /// Send as one UDP datagram to this address.
    Udp(SocketAddr),
}

/// One output, written into the caller's buffer by [`crate::Router::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where the bytes go.
    pub dest: Destination,
    /// How many bytes of the buffer to send.
    pub len: usize,
}

/// A caller's buffer of this size holds any transmit.
pub const TRANSMIT_BUF_MIN: usize = FRAME_HEADER_LEN + SEALED_BODY_MAX;

#[derive(Debug, Clone, Copy)]
struct Item {
    dest: Destination,
    start: usize,
    len: usize,
    /// A frames datagram that more frames may join.
    open: bool,
    /// Seal the datagram with this connection's UDP key when it leaves.
    seal: Option<ConnId>,
    /// A frames datagram that asks its next hop for a heartbeat at once ([`FLAG_ANSWER`]);
    /// set as it leaves, so that frames batched into it compare headers without it.
    answer: bool,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    /// The bytes of every queued output, back to back; empty whenever `queue` is.
    arena: Vec<u8>,
    queue: VecDeque<Item>,
    data_limit: usize,
    /// Arena capacity kept once the queue drains (a gossip burst may have grown it).
    keep: usize,
}

impl Outbox {
    pub(crate) fn new(data_limit: usize, keep: usize) -> Self {
        Outbox { arena: Vec::new(), queue: VecDeque::new(), data_limit, keep }
    }

    /// Whether data of `n` more bytes may be queued.
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.arena.len() + n <= self.data_limit
    }

    fn push(&mut self, dest: Destination, start: usize, open: bool, seal: Option<ConnId>) {
        let len = self.arena.len() - start;
        self.queue.push_back(Item { dest, start, len, open, seal, answer: false });
    }

    /// Queues a frame for the bridge.
    pub(crate) fn inject(&mut self, frame: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(frame);
        self.push(Destination::Bridge, start, false, None);
    }

    /// The datagram queued last, if `need` more bytes of frames may join it: it is a frames
    /// datagram still open to `to`, sealed alike, at the arena's end, with room under
    /// `datagram_max`. (Its header is for the caller to compare.)
    fn joinable(&self, to: SocketAddr, need: usize, datagram_max: usize, seal: Option<ConnId>) -> Option<&Item> {
        let last = self.queue.back()?;
        (last.open
            && last.seal == seal
            && last.dest == Destination::Udp(to)
            && last.start + last.len == self.arena.len()
            && last.len + need <= datagram_max)
            .then_some(last)
    }

    /// The sequence number of the datagram queued last, if it goes to `to` with the same
    /// header (sequence number aside) and has room for `frame_len` more bytes of frame.
    pub(crate) fn open_seq(
        &self,
        to: SocketAddr,
        h: &Header,
        frame_len: usize,
        datagram_max: usize,
        seal: Option<ConnId>,
    ) -> Option<u64> {
        let last = self.joinable(to, 2 + frame_len, datagram_max, seal)?;
        let bytes = &self.arena[last.start..last.start + FRAMES_HEADER_LEN];
        let mut mine = [0u8; FRAMES_HEADER_LEN];
        Header { seq: 0, ..*h }.emit(&mut mine);
        (h.kind == Kind::Frames && bytes[..HEADER_LEN] == mine[..HEADER_LEN])
            .then(|| u64::from_be_bytes(bytes[HEADER_LEN..].try_into().expect("8 bytes")))
    }

    /// Queues a frame in a frames datagram to `to`: it joins the datagram queued last when
    /// that one has exactly this header (sequence number included), the same sealing and
    /// room; otherwise it starts a new one. Returns whether a new datagram was started.
    pub(crate) fn frame(
        &mut self,
        to: SocketAddr,
        h: &Header,
        frame: &[u8],
        datagram_max: usize,
        seal: Option<ConnId>,
    ) -> bool {
        let need = 2 + frame.len();
        let joins = self
            .joinable(to, need, datagram_max, seal)
            .is_some_and(|last| same_header(&self.arena[last.start..last.start + FRAMES_HEADER_LEN], h));
        if joins {
            push_frame(&mut self.arena, frame);
            self.queue.back_mut().expect("joinable").len += need;
            return false;
        }
        let start = self.arena.len();
        self.arena.resize(start + FRAMES_HEADER_LEN, 0);
        h.emit(&mut self.arena[start..]);
        push_frame(&mut self.arena, frame);
        self.push(Destination::Udp(to), start, true, seal);
        true
    }

    /// Queues a complete datagram (a heartbeat or a relayed copy) with a new hop limit. A
    /// relayed copy does not pass on the previous hop's request for an answer.
    pub(crate) fn datagram(&mut self, to: SocketAddr, bytes: &[u8], hop_limit: Option<u8>, seal: Option<ConnId>) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        if let Some(h) = hop_limit {
            self.arena[start + 3] = h;
            self.arena[start + 2] &= !FLAG_ANSWER;
        }
        self.push(Destination::Udp(to), start, false, seal);
    }

    /// The datagram queued last (the one the last frame joined or started, or the last
    /// relayed copy) asks its next hop for a heartbeat at once.
    pub(crate) fn ask_answer(&mut self) {
        if let Some(last) = self.queue.back_mut() {
            debug_assert!(matches!(last.dest, Destination::Udp(_)), "only datagrams ask for answers");
            last.answer = true;
        }
    }

    /// Queues a control message, sealed into a record when `seal` is given; consecutive
    /// messages to one connection share a transmit. Returns the encoded length (0 if the
    /// sealing key ran out of nonces and the message was not queued).
    pub(crate) fn message(&mut self, conn: ConnId, msg: &Message, seal: Option<&mut Sealer>) -> usize {
        let start = self.arena.len();
        msg.emit(&mut self.arena);
        if let Some(s) = seal {
            if s.seal_record(&mut self.arena, start).is_err() {
                tracing::error!(%conn, "control key out of nonces; message not sent");
                self.arena.truncate(start);
                return 0;
            }
        }
        let len = self.arena.len() - start;
        if let Some(last) = self.queue.back_mut() {
            if last.dest == Destination::Conn(conn)
                && last.start + last.len == start
                && last.len + len <= TRANSMIT_BUF_MIN
            {
                last.len += len;
                return len;
            }
        }
        self.push(Destination::Conn(conn), start, false, None);
        len
    }

    /// The last `n` bytes queued.
    pub(crate) fn last_bytes(&self, n: usize) -> &[u8] {
        &self.arena[self.arena.len() - n..]
    }

    /// Queues raw stream bytes (the preamble).
    pub(crate) fn stream(&mut self, conn: ConnId, bytes: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.push(Destination::Conn(conn), start, false, None);
    }

    /// Moves the oldest output into `buf`; also says which connection's key must seal it.
    pub(crate) fn poll(&mut self, buf: &mut [u8]) -> Option<(Transmit, Option<ConnId>)> {
        let item = self.queue.pop_front()?;
        assert!(buf.len() >= item.len, "poll_transmit buffer shorter than TRANSMIT_BUF_MIN");
        buf[..item.len].copy_from_slice(&self.arena[item.start..item.start + item.len]);
        if item.answer {
            buf[2] |= FLAG_ANSWER;
        }
        if self.queue.is_empty() {
            self.arena.clear();
            if self.arena.capacity() > self.keep {
                self.arena = Vec::new();
                self.queue = VecDeque::new();
            }
        }
        Some((Transmit { dest: item.dest, len: item.len }, item.seal))
    }

    /// Drops queued output for a closed connection.
    pub(crate) fn forget_conn(&mut self, conn: ConnId) {
        self.queue.retain(|i| i.dest != Destination::Conn(conn));
        if self.queue.is_empty() {
            self.arena.clear();
        }
    }

    /// Whether nothing is queued.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

fn same_header(bytes: &[u8], h: &Header) -> bool {
    let mut mine = [0u8; FRAMES_HEADER_LEN];
    h.emit(&mut mine);
    h.kind == Kind::Frames && bytes == mine
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerName;
    use crate::wire::datagram::Datagram;

    /// An empty outbox, a peer's address, a frames header to it (seq 7) and a 60-byte frame.
    fn one_peer() -> (Outbox, SocketAddr, Header, [u8; 60]) {
        let h = Header {
            kind: Kind::Frames,
            flags: 0,
            hop_limit: 8,
            src: PeerName::from_u64(1),
            dst: PeerName::from_u64(2),
            seq: 7,
        };
        (Outbox::new(1 << 20, 64 << 10), "10.0.0.2:6783".parse().unwrap(), h, [0x02u8; 60])
    }

    #[test]
    fn frames_to_one_peer_share_a_datagram_up_to_the_limit() {
        let (mut o, to, h, f) = one_peer();
        assert_eq!(o.open_seq(to, &h, 60, 200, None), None);
        assert!(o.frame(to, &h, &f, 200, None));
        assert_eq!(o.open_seq(to, &Header { seq: 99, ..h }, 60, 200, None), Some(7));
        assert!(!o.frame(to, &h, &f, 200, None));
        assert_eq!(o.open_seq(to, &h, 60, 200, None), None, "no room for a third");
        assert!(o.frame(to, &Header { seq: 8, ..h }, &f, 200, None));
        let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
        let (t, _) = o.poll(&mut buf).unwrap();
        assert_eq!(t, Transmit { dest: Destination::Udp(to), len: 24 + 2 * 62 });
        let d = Datagram::new_checked(&buf[..t.len]).unwrap();
        assert_eq!((d.frames().unwrap().count(), d.seq()), (2, 7));
        assert_eq!(o.poll(&mut buf).unwrap().0.len, 24 + 62);
        assert!(o.poll(&mut buf).is_none());
        assert!(o.is_empty());
    }

    #[test]
    fn a_request_for_an_answer_is_per_hop_and_does_not_split_a_batch() {
        let (mut o, to, h, f) = one_peer();
        assert!(o.frame(to, &h, &f, 1000, None));
        o.ask_answer();
        assert!(!o.frame(to, &h, &f, 1000, None), "the second frame joins the asking datagram");
        let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
        let (t, _) = o.poll(&mut buf).unwrap();
        let asked = buf[..t.len].to_vec();
        let d = Datagram::new_checked(&asked[..]).unwrap();
        assert!(d.answer_requested());
        assert_eq!(d.frames().unwrap().count(), 2);
        // Relayed, it asks nothing of the next hop unless the relay asks for itself.
        o.datagram(to, &asked, Some(7), None);
        let (t, _) = o.poll(&mut buf).unwrap();
        let d = Datagram::new_checked(&buf[..t.len]).unwrap();
        assert!(!d.answer_requested());
        assert_eq!(d.hop_limit(), 7);
        o.datagram(to, &asked, Some(7), None);
        o.ask_answer();
        let (t, _) = o.poll(&mut buf).unwrap();
        assert!(Datagram::new_checked(&buf[..t.len]).unwrap().answer_requested());
    }

    #[test]
    fn dropping_a_closed_connections_output_leaves_no_bytes_behind() {
        let (mut o, _, _, _) = one_peer();
        o.stream(ConnId(3), b"preamble");
        o.forget_conn(ConnId(3));
        assert!(o.is_empty());
        assert!(o.arena.is_empty(), "no stale bytes stay queued");
    }
}
