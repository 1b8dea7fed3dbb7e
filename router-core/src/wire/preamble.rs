//! The TCP preamble: the first bytes each side of a control connection sends.
//!
//! ```text
//! 0..8   magic "weave-rs"
//! 8      lowest protocol version spoken
//! 9      highest protocol version spoken
//! ```
//! Both sides send theirs at once; each then uses the highest version in both ranges.

use super::DecodeError;

/// The magic bytes opening every control connection.
pub const MAGIC: [u8; 8] = *b"weave-rs";
/// Encoded length of a preamble.
pub const LEN: usize = 10;
/// The protocol versions this build speaks.
pub const VERSIONS: (u8, u8) = (1, 1);

/// A decoded preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    /// Lowest version the sender speaks.
    pub version_min: u8,
    /// Highest version the sender speaks.
    pub version_max: u8,
}

/// Why a preamble was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreambleError {
    /// The first 8 bytes are not [`MAGIC`]: the other end is not a weave router.
    #[error("bad magic: the other end is not a weave router")]
    BadMagic,
    /// The range is empty (min > max).
    #[error("malformed version range")]
    Malformed,
}

impl Preamble {
    /// Our own preamble.
    pub const OURS: Preamble = Preamble { version_min: VERSIONS.0, version_max: VERSIONS.1 };

    /// Decodes exactly [`LEN`] bytes.
    pub fn parse(b: &[u8; LEN]) -> Result<Self, PreambleError> {
        if b[..8] != MAGIC {
            return Err(PreambleError::BadMagic);
        }
        if b[8] > b[9] {
            return Err(PreambleError::Malformed);
        }
        Ok(Preamble { version_min: b[8], version_max: b[9] })
    }

    /// Encodes the preamble.
    pub fn emit(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8] = self.version_min;
        b[9] = self.version_max;
        b
    }

    /// The highest version both ranges contain, if any.
    pub fn negotiate(&self, other: &Preamble) -> Option<u8> {
        let hi = self.version_max.min(other.version_max);
        let lo = self.version_min.max(other.version_min);
        (hi >= lo).then_some(hi)
    }
}

impl From<PreambleError> for DecodeError {
    fn from(e: PreambleError) -> Self {
        match e {
            PreambleError::BadMagic => DecodeError::Invalid("magic"),
            PreambleError::Malformed => DecodeError::Invalid("version range"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BYTES: [u8; LEN] = [b'w', b'e', b'a', b'v', b'e', b'-', b'r', b's', 1, 3];

    #[test]
    fn decodes_and_encodes_the_static_bytes() {
        let p = Preamble::parse(&BYTES).unwrap();
        assert_eq!(p, Preamble { version_min: 1, version_max: 3 });
        assert_eq!(p.emit(), BYTES);
    }

    #[test]
    fn refuses_bad_magic_and_empty_ranges() {
        let mut b = BYTES;
        b[0] = b'W';
        assert_eq!(Preamble::parse(&b), Err(PreambleError::BadMagic));
        let mut b = BYTES;
        b[8] = 4;
        assert_eq!(Preamble::parse(&b), Err(PreambleError::Malformed));
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let a = Preamble { version_min: 1, version_max: 3 };
        assert_eq!(a.negotiate(&Preamble { version_min: 2, version_max: 5 }), Some(3));
        assert_eq!(a.negotiate(&Preamble { version_min: 4, version_max: 5 }), None);
    }

    proptest! {
        #[test]
        fn round_trips(lo in any::<u8>(), hi in any::<u8>()) {
            let p = Preamble { version_min: lo.min(hi), version_max: lo.max(hi) };
            prop_assert_eq!(Preamble::parse(&p.emit()), Ok(p));
        }
    }
}
