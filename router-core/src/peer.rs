//! Identifiers: peer names, incarnation UIDs, MAC addresses and connection ids.

use core::fmt;
use core::str::FromStr;

use serde::{Serialize, Serializer};

/// A peer's 48-bit name, stable across restarts, shown as `aa:bb:cc:dd:ee:ff`.
///
/// The all-ones name is reserved: on the wire it means "broadcast along the source's tree".
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerName(pub [u8; 6]);

// The bytes' order, compared as one word: searches of sorted names are hot.
impl Ord for PeerName {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.to_u64().cmp(&other.to_u64())
    }
}

impl PartialOrd for PeerName {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

// Hashing as one word is several times faster than six bytes in the hot lookup tables.
impl core::hash::Hash for PeerName {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.to_u64());
    }
}

impl PeerName {
    /// The reserved broadcast name, never a real peer.
    pub const BROADCAST: PeerName = PeerName([0xff; 6]);

    /// Builds a name from the low 48 bits of `v` (handy in tests and the simulator).
    pub const fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        PeerName([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The name as a number.
    pub const fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Whether this name may name a real peer.
    pub fn is_valid(self) -> bool {
        self != Self::BROADCAST
    }

    /// Whether this name is one a router may take for itself: a unicast MAC-like address
    /// (first byte even), not all zeros.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self != PeerName([0; 6])
    }
}

/// A [`PeerName`] or [`Mac`] string that is not six `:`-separated hex bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected six hex bytes separated by ':' such as 0a:1b:2c:3d:4e:5f")]
pub struct ParseNameError;

fn parse_six(s: &str) -> Result<[u8; 6], ParseNameError> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let part = parts.next().ok_or(ParseNameError)?;
        if part.is_empty() || part.len() > 2 {
            return Err(ParseNameError);
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| ParseNameError)?;
    }
    if parts.next().is_some() {
        return Err(ParseNameError);
    }
    Ok(out)
}

fn fmt_six(b: &[u8; 6], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
}

impl FromStr for PeerName {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_six(s).map(PeerName)
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_six(&self.0, f)
    }
}

impl fmt::Debug for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_six(&self.0, f)
    }
}

impl Serialize for PeerName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PeerName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A random identifier of one incarnation of a peer; a restarted peer has a new one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize)]
pub struct PeerUid(pub u64);

impl fmt::Display for PeerUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl core::hash::Hash for Mac {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.to_u64());
    }
}

impl Mac {
    /// The broadcast address.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Group (broadcast or multicast) addresses have the I/G bit set.
    pub const fn is_group(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// The address as a number, for hashing.
    pub const fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl FromStr for Mac {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_six(s).map(Mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_six(&self.0, f)
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_six(&self.0, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A TCP control connection, numbered by the core.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
pub struct ConnId(pub u32);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn names_order_as_their_bytes(a in any::<[u8; 6]>(), b in any::<[u8; 6]>()) {
            prop_assert_eq!(PeerName(a).cmp(&PeerName(b)), a.cmp(&b));
        }
    }

    #[test]
    fn names_print_and_parse_as_colon_hex() {
        let n: PeerName = "0a:1b:2c:3d:4e:5f".parse().unwrap();
        assert_eq!(n.0, [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]);
        assert_eq!(n.to_string(), "0a:1b:2c:3d:4e:5f");
        assert_eq!(PeerName::from_u64(n.to_u64()), n);
        for bad in ["", "0a:1b", "0a:1b:2c:3d:4e:5f:00", "0a:1b:2c:3d:4e:zz", "0a:1b:2c:3d:4e:123"] {
            assert_eq!(bad.parse::<PeerName>(), Err(ParseNameError), "{bad}");
        }
        assert!(!PeerName::BROADCAST.is_valid());
    }

    #[test]
    fn group_macs_are_recognised() {
        assert!(Mac::BROADCAST.is_group());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_group());
        assert!(!Mac([0x02, 0, 0, 0, 0, 1]).is_group());
    }
}
