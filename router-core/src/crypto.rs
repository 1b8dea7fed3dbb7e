//! Encryption: a password-authenticated key exchange (SPAKE2) inside the handshake, a key
//! schedule (HKDF-SHA256) over the exchange and the handshake transcript, and AEAD sealing of
//! control records and UDP datagrams with counter nonces and a replay window.
//!
//! See `docs/security.md` for the threat model and `docs/protocol.md` for the bytes.

use core::fmt;
use std::sync::Arc;

use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Spake2};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// The AEAD every record and datagram is sealed with: ChaCha20-Poly1305 from `ring` (see
/// `docs/security.md` and the `aead` group of `cargo bench -p weave-benches --bench core`).
type Aead = LessSafeKey;

fn aead(key: &[u8; 32]) -> Aead {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"))
}

/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;
/// Length of the explicit counter carried by an encrypted datagram.
pub const COUNTER_LEN: usize = 8;
/// Bytes an encrypted datagram carries beyond its plaintext form: counter and tag.
pub const DATAGRAM_OVERHEAD: usize = COUNTER_LEN + TAG_LEN;
/// Length of the PAKE message carried in a handshake.
pub const PAKE_MSG_LEN: usize = 33;
/// Length of a key confirmation value.
pub const CONFIRM_LEN: usize = 32;
/// Datagrams a receiver accepts out of order, behind the highest counter it has seen.
pub const REPLAY_WINDOW: u64 = 1024;

const ID_INITIATOR: &[u8] = b"weave-rs initiator";
const ID_ACCEPTOR: &[u8] = b"weave-rs acceptor";

/// The source of key material: the OS in production, a seeded stream in simulation.
///
/// The core never reads a random source itself; the driver passes one to
/// [`crate::Router::with_random`].
pub trait Random: Send {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// A deterministic [`Random`] from a seed (ChaCha20): for simulation and tests only.
#[derive(Debug)]
pub struct SeededRandom(ChaCha20Rng);

impl SeededRandom {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRandom(ChaCha20Rng::seed_from_u64(seed))
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
}

/// Lets a [`Random`] serve crates that take a `rand_core` generator.
struct Rng<'a>(&'a mut dyn Random);

impl RngCore for Rng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl CryptoRng for Rng<'_> {}

/// The network's shared secret. Its bytes are wiped when the last copy is dropped, and it
/// never prints.
#[derive(Clone)]
pub struct Password(Arc<Zeroizing<Vec<u8>>>);

/// A password that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Nothing left after removing the trailing newline.
    #[error("the password is empty")]
    Empty,
}

impl Password {
    /// A password from its bytes; one trailing newline (as a file has) is removed.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Password, PasswordError> {
        let mut v = Zeroizing::new(bytes.into());
        if v.last() == Some(&b'\n') {
            v.pop();
            if v.last() == Some(&b'\r') {
                v.pop();
            }
        }
        if v.is_empty() {
            return Err(PasswordError::Empty);
        }
        Ok(Password(Arc::new(v)))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Our half of a PAKE run on one connection.
pub(crate) struct Pake {
    state: Spake2<Ed25519Group>,
    outbound: bool,
}

impl fmt::Debug for Pake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pake").field("outbound", &self.outbound).finish_non_exhaustive()
    }
}

impl Pake {
    /// Starts a run with a fresh ephemeral scalar; returns the message for our handshake.
    /// The initiator (the side that dialled) plays SPAKE2's side A.
    pub(crate) fn start(password: &Password, outbound: bool, random: &mut dyn Random) -> (Pake, [u8; PAKE_MSG_LEN]) {
        let pw = spake2::Password::new(password.0.as_slice());
        let (ia, ib) = (Identity::new(ID_INITIATOR), Identity::new(ID_ACCEPTOR));
        let (state, msg) = if outbound {
            Spake2::<Ed25519Group>::start_a_with_rng(&pw, &ia, &ib, Rng(random))
        } else {
            Spake2::<Ed25519Group>::start_b_with_rng(&pw, &ia, &ib, Rng(random))
        };
        (Pake { state, outbound }, msg.try_into().expect("a SPAKE2 Ed25519 message is 33 bytes"))
    }

    /// Finishes the run with the peer's message and derives the session keys, bound to the
    /// transcript of both handshakes. A wrong password is not detected here: the keys simply
    /// differ, and key confirmation fails.
    pub(crate) fn finish(self, their_msg: &[u8], ours: &[u8], theirs: &[u8]) -> Option<Session> {
        let shared = Zeroizing::new(self.state.finish(their_msg).ok()?);
        let (initiator, acceptor) = if self.outbound { (ours, theirs) } else { (theirs, ours) };
        let mut h = Sha256::new();
        h.update(b"weave-rs handshake transcript v1");
        for part in [initiator, acceptor] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part);
        }
        let transcript = h.finalize();
        Some(Session::derive(&shared, &transcript, self.outbound))
    }
}

/// Keys and counters of one connection, both directions, both planes.
pub(crate) struct Session {
    pub(crate) confirm_mine: [u8; CONFIRM_LEN],
    confirm_theirs: [u8; CONFIRM_LEN],
    pub(crate) tcp_tx: Sealer,
    tcp_rx: Opener,
    /// The peer's confirmation checked out: what it sends from now on is sealed.
    pub(crate) rx_on: bool,
    pub(crate) udp_tx: Sealer,
    pub(crate) udp_rx: DatagramOpener,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("rx_on", &self.rx_on).finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.confirm_mine.zeroize();
        self.confirm_theirs.zeroize();
    }
}

impl Session {
    fn derive(shared: &[u8], transcript: &[u8], outbound: bool) -> Session {
        let prk = Hkdf::<Sha256>::new(Some(transcript), shared);
        // Keys labelled "initiator" protect what the initiator sends.
        let k = |what: &str, initiator: bool| {
            let dir = if initiator { "initiator" } else { "acceptor" };
            let mut out = Zeroizing::new([0u8; 32]);
            prk.expand(format!("weave-rs v1 {what} {dir}").as_bytes(), out.as_mut())
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            out
        };
        let (mine, theirs) = (outbound, !outbound);
        Session {
            confirm_mine: *k("confirm", mine),
            confirm_theirs: *k("confirm", theirs),
            tcp_tx: Sealer::new(&k("tcp", mine)),
            tcp_rx: Opener::new(&k("tcp", theirs)),
            rx_on: false,
            udp_tx: Sealer::new(&k("udp", mine)),
            udp_rx: DatagramOpener::new(&k("udp", theirs)),
        }
    }

    /// Checks the peer's key confirmation (in constant time); on success, what the peer
    /// sends from now on is opened with the session's receive key.
    pub(crate) fn confirm(&mut self, theirs: &[u8; CONFIRM_LEN]) -> bool {
        let ok = bool::from(self.confirm_theirs.ct_eq(theirs));
        self.rx_on = ok;
        ok
    }

    /// Opens one control record body (ciphertext and tag) in place; `false` if it fails
    /// authentication (the connection must close).
    pub(crate) fn open_record(&mut self, body: &mut Vec<u8>) -> bool {
        self.tcp_rx.open(body)
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    // Unique: each key's counter only goes up, and every connection has new keys.
    Nonce::assume_unique_for_key(n)
}

/// One direction's sending key and the counter of its next nonce.
pub(crate) struct Sealer {
    aead: Aead,
    next: u64,
}

/// The nonce counter ran out: the connection must be replaced (never happens in practice:
/// 2^64 messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted;

impl Sealer {
    fn new(key: &[u8; 32]) -> Sealer {
        Sealer { aead: aead(key), next: 0 }
    }

    fn take(&mut self) -> Result<u64, Exhausted> {
        let n = self.next;
        self.next = n.checked_add(1).ok_or(Exhausted)?;
        Ok(n)
    }

    /// Seals the control message framed at `out[start..]` (length prefix and body) in place:
    /// the body is encrypted, the tag appended, the length prefix rewritten.
    pub(crate) fn seal_record(&mut self, out: &mut Vec<u8>, start: usize) -> Result<(), Exhausted> {
        let n = self.take()?;
        let body = start + 4;
        let tag =
            self.aead.seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut out[body..]).expect("bounded record");
        out.extend_from_slice(tag.as_ref());
        let len = (out.len() - body) as u32;
        out[start..body].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Seals the plaintext datagram `buf[..len]` in place (the buffer has
    /// [`DATAGRAM_OVERHEAD`] bytes to spare); returns the sealed length.
    pub(crate) fn seal_datagram(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Exhausted> {
        use crate::wire::datagram::{FLAG_ENCRYPTED, HEADER_LEN};
        let n = self.take()?;
        let body = HEADER_LEN + COUNTER_LEN;
        buf.copy_within(HEADER_LEN..len, body);
        buf[2] |= FLAG_ENCRYPTED;
        buf[HEADER_LEN..body].copy_from_slice(&n.to_be_bytes());
        let (aad, rest) = buf.split_at_mut(body);
        let end = len - HEADER_LEN;
        let aad = Aad::from(&aad[..]);
        let tag = self.aead.seal_in_place_separate_tag(nonce(n), aad, &mut rest[..end]).expect("bounded datagram");
        rest[end..end + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(len + DATAGRAM_OVERHEAD)
    }
}

/// One direction's receiving key for the control stream: nonces are implicit (the stream is
/// ordered), so the counter must match exactly.
struct Opener {
    aead: Aead,
    next: u64,
}

impl Opener {
    fn new(key: &[u8; 32]) -> Opener {
        Opener { aead: aead(key), next: 0 }
    }

    fn open(&mut self, body: &mut Vec<u8>) -> bool {
        let Some(split) = body.len().checked_sub(TAG_LEN) else { return false };
        let Some(after) = self.next.checked_add(1) else { return false };
        if self.aead.open_in_place(nonce(self.next), Aad::empty(), body).is_err() {
            return false;
        }
        body.truncate(split);
        self.next = after;
        true
    }
}

/// Why an encrypted datagram was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Too short, forged, tampered with, or sealed with another key.
    Unauthenticated,
    /// Its counter was accepted before, or is behind the replay window.
    Replayed,
}

/// One direction's receiving key for UDP, with its replay window.
pub(crate) struct DatagramOpener {
    aead: Aead,
    window: ReplayWindow,
}

impl DatagramOpener {
    fn new(key: &[u8; 32]) -> DatagramOpener {
        DatagramOpener { aead: aead(key), window: ReplayWindow::default() }
    }

    /// Opens the sealed datagram `buf` in place; returns the length of its plaintext form
    /// (the header with the encrypted flag cleared, then the body) at the start of `buf`.
    pub(crate) fn open(&mut self, buf: &mut [u8]) -> Result<usize, OpenError> {
        use crate::wire::datagram::{FLAG_ENCRYPTED, HEADER_LEN};
        let body = HEADER_LEN + COUNTER_LEN;
        if buf.len() < body + TAG_LEN {
            return Err(OpenError::Unauthenticated);
        }
        let n = u64::from_be_bytes(buf[HEADER_LEN..body].try_into().expect("8 bytes"));
        if !self.window.fresh(n) {
            return Err(OpenError::Replayed);
        }
        let split = buf.len() - TAG_LEN;
        let (aad, rest) = buf.split_at_mut(body);
        if self.aead.open_in_place(nonce(n), Aad::from(&aad[..]), rest).is_err() {
            return Err(OpenError::Unauthenticated);
        }
        self.window.accept(n);
        buf.copy_within(body..split, HEADER_LEN);
        buf[2] &= !FLAG_ENCRYPTED;
        Ok(split - COUNTER_LEN)
    }
}

/// Counters accepted so far: the highest, and a bitmap of the [`REPLAY_WINDOW`] below it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    /// One more than the highest counter accepted (0: none yet).
    top: u64,
    bits: [u64; (REPLAY_WINDOW / 64) as usize],
}

impl ReplayWindow {
    fn bit(n: u64) -> (usize, u64) {
        let i = n % REPLAY_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Whether `n` may be accepted: above everything seen, or inside the window and unseen.
    pub(crate) fn fresh(&self, n: u64) -> bool {
        if n >= self.top {
            return true;
        }
        if self.top - n > REPLAY_WINDOW {
            return false;
        }
        let (w, b) = Self::bit(n);
        self.bits[w] & b == 0
    }

    /// Marks `n` accepted (the caller checked [`ReplayWindow::fresh`]).
    pub(crate) fn accept(&mut self, n: u64) {
        if n >= self.top {
            // Slide: clear the slots of the counters skipped over (all of them after a big jump).
            let skipped = (n - self.top).min(REPLAY_WINDOW);
            for k in 0..skipped {
                let (w, b) = Self::bit(self.top + k);
                self.bits[w] &= !b;
            }
            if n - self.top >= REPLAY_WINDOW {
                self.bits = [0; (REPLAY_WINDOW / 64) as usize];
            }
            self.top = n + 1;
        }
        let (w, b) = Self::bit(n);
        self.bits[w] |= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_replay_window_accepts_each_counter_once_and_forgets_only_what_falls_behind() {
        let mut w = ReplayWindow::default();
        for n in [5, 3, 4, 0, 1000, 6] {
            assert!(w.fresh(n), "{n}");
            w.accept(n);
            assert!(!w.fresh(n), "{n} twice");
        }
        assert!(w.fresh(2) && w.fresh(999));
        w.accept(5000);
        assert!(!w.fresh(5000 - REPLAY_WINDOW), "behind the window");
        assert!(w.fresh(5000 - REPLAY_WINDOW + 1) && w.fresh(4999));
        assert!(!w.fresh(1000));
    }

    proptest! {
        #[test]
        fn the_replay_window_matches_a_set(ops in proptest::collection::vec(0u64..3000, 1..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::BTreeSet::new();
            for n in ops {
                let top = seen.last().copied();
                let model = !seen.contains(&n) && top.is_none_or(|t| n + REPLAY_WINDOW > t);
                prop_assert_eq!(w.fresh(n), model, "counter {}", n);
                if model {
                    w.accept(n);
                    seen.insert(n);
                }
            }
        }
    }

    fn pair(pw_a: &str, pw_b: &str) -> (Session, Session) {
        let mut r = SeededRandom::new(1);
        let (a, ma) = Pake::start(&Password::new(pw_a).unwrap(), true, &mut r);
        let (b, mb) = Pake::start(&Password::new(pw_b).unwrap(), false, &mut r);
        assert_eq!((ma.len(), mb.len()), (PAKE_MSG_LEN, PAKE_MSG_LEN));
        let sa = a.finish(&mb, b"hs-a", b"hs-b").unwrap();
        let sb = b.finish(&ma, b"hs-b", b"hs-a").unwrap();
        (sa, sb)
    }

    #[test]
    fn equal_passwords_confirm_and_different_ones_do_not() {
        let (mut a, mut b) = pair("secret", "secret");
        let (ca, cb) = (a.confirm_mine, b.confirm_mine);
        assert_ne!(ca, cb, "each direction has its own confirmation");
        assert!(a.confirm(&cb) && b.confirm(&ca));
        let (mut a, mut b) = pair("secret", "Secret");
        let (ca, cb) = (a.confirm_mine, b.confirm_mine);
        assert!(!a.confirm(&cb) && !b.confirm(&ca));
    }

    #[test]
    fn records_open_in_order_and_only_once() {
        let (mut a, mut b) = pair("pw", "pw");
        let mut out = vec![0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'];
        a.tcp_tx.seal_record(&mut out, 0).unwrap();
        assert_eq!(&out[..4], &[0, 0, 0, 5 + 16]);
        assert!(!out.windows(5).any(|w| w == b"hello"));
        let mut body = out[4..].to_vec();
        let copy = body.clone();
        assert!(b.open_record(&mut body));
        assert_eq!(body, b"hello");
        let mut again = copy;
        assert!(!b.open_record(&mut again), "a replayed record fails: its nonce is used up");
    }

    #[test]
    fn datagrams_round_trip_and_tampering_or_replay_is_refused() {
        let (mut a, mut b) = pair("pw", "pw");
        let mut buf = [0u8; 128];
        buf[..4].copy_from_slice(&[1, 2, 0, 9]);
        buf[16..40].copy_from_slice(b"sequence+frames-payload!");
        let plain = buf[..40].to_vec();
        let n = a.udp_tx.seal_datagram(&mut buf, 40).unwrap();
        assert_eq!(n, 40 + DATAGRAM_OVERHEAD);
        let sealed = buf[..n].to_vec();
        assert_eq!(sealed[2], 1, "flag set");
        for i in [3, 10, 17, 30, n - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(b.udp_rx.open(&mut t), Err(OpenError::Unauthenticated), "byte {i}");
        }
        assert_eq!(b.udp_rx.open(&mut sealed[..n - 1].to_vec()), Err(OpenError::Unauthenticated));
        let mut ok = sealed.clone();
        assert_eq!(b.udp_rx.open(&mut ok), Ok(40));
        assert_eq!(&ok[..40], &plain[..]);
        assert_eq!(b.udp_rx.open(&mut sealed.clone()), Err(OpenError::Replayed));
    }

    #[test]
    fn passwords_never_print_and_lose_one_trailing_newline() {
        let p = Password::new("hunter2\n").unwrap();
        assert_eq!(p.0.as_slice(), b"hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(Password::new("\n").unwrap_err(), PasswordError::Empty);
    }
}
