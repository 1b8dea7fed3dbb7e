//! Wire formats, byte for byte as in `docs/protocol.md`.
//!
//! Every decoder takes untrusted bytes, checks lengths before it reads, and returns a small
//! [`DecodeError`] instead of panicking. Encoders write into a caller's buffer or `Vec`.
//!
//! - [`preamble`]: the first 10 bytes each side sends on a TCP control connection.
//! - [`control`]: length-prefixed control messages (handshake, refusal, heartbeat, UDP ack,
//!   gossip).
//! - [`gossip`]: bodies of the gossip messages (summary, digest, update).
//! - [`ipam`]: the body of the address allocator's gossip.
//! - [`datagram`]: UDP datagrams: heartbeats and batches of Ethernet frames.

pub mod control;
pub mod datagram;
pub mod gossip;
pub mod ipam;
pub mod preamble;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::peer::PeerName;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the field `.0`.
    #[error("truncated at {0}")]
    Truncated(&'static str),
    /// Bytes were left after the last field.
    #[error("trailing bytes")]
    TrailingBytes,
    /// A field held a value outside its range.
    #[error("invalid value in {0}")]
    Invalid(&'static str),
    /// A length or count is larger than the format allows.
    #[error("too long: {0}")]
    TooLong(&'static str),
    /// The protocol version byte is not one we speak.
    #[error("unsupported version {0}")]
    Version(u8),
}

/// A cursor over untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.take(N, what)?;
        Ok(b.try_into().expect("take returned exactly N bytes"))
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn name(&mut self, what: &'static str) -> Result<PeerName, DecodeError> {
        Ok(PeerName(self.array(what)?))
    }

    /// A `u8`-length-prefixed UTF-8 string.
    pub(crate) fn short_str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8(what)?);
        let bytes = self.take(len, what)?;
        core::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError::Invalid(what))
    }

    /// An optional socket address: family byte (0 none, 4, 6), address, port.
    pub(crate) fn opt_addr(&mut self, what: &'static str) -> Result<Option<SocketAddr>, DecodeError> {
        let ip = match self.u8(what)? {
            0 => return Ok(None),
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(what)?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>(what)?)),
            _ => return Err(DecodeError::Invalid(what)),
        };
        Ok(Some(SocketAddr::new(ip, self.u16(what)?)))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Appends big-endian fields to a `Vec`.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_short_str(&mut self, s: &str);
    fn put_opt_addr(&mut self, a: Option<SocketAddr>);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_short_str(&mut self, s: &str) {
        let s = truncate_utf8(s, usize::from(u8::MAX));
        self.push(u8::try_from(s.len()).expect("truncated to 255 bytes"));
        self.extend_from_slice(s.as_bytes());
    }
    fn put_opt_addr(&mut self, a: Option<SocketAddr>) {
        match a {
            None => self.push(0),
            Some(SocketAddr::V4(a)) => {
                self.push(4);
                self.extend_from_slice(&a.ip().octets());
                self.put_u16(a.port());
            }
            Some(SocketAddr::V6(a)) => {
                self.push(6);
                self.extend_from_slice(&a.ip().octets());
                self.put_u16(a.port());
            }
        }
    }
}

/// The encoded length of an optional address.
pub(crate) fn opt_addr_len(a: Option<SocketAddr>) -> usize {
    match a {
        None => 1,
        Some(SocketAddr::V4(_)) => 1 + 4 + 2,
        Some(SocketAddr::V6(_)) => 1 + 16 + 2,
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_short_input_and_trailing_bytes() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a"), Ok(0x0102));
        assert_eq!(r.u16("b"), Err(DecodeError::Truncated("b")));
        let r = Reader::new(&[1]);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let s = "é".repeat(200);
        let mut v = Vec::new();
        v.put_short_str(&s);
        assert_eq!(v[0], 254);
        let mut r = Reader::new(&v);
        assert_eq!(r.short_str("s").unwrap().chars().count(), 127);
    }
}
