//! Seeded random streams, one per purpose, so that a change in one place does not reshuffle
//! the choices made in another.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A purpose-specific stream derived from the scenario seed and a label.
pub fn stream(seed: u64, label: &str, index: u64) -> ChaCha8Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes().chain(seed.to_be_bytes()).chain(index.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// A number derived from the seed and a label (for router seeds).
pub fn derive(seed: u64, label: &str, index: u64) -> u64 {
    stream(seed, label, index).next_u64()
}

/// Uniform in `0..n` (n > 0).
pub fn below(r: &mut ChaCha8Rng, n: u64) -> u64 {
    // Multiply-shift: unbiased enough for simulation and portable across platforms.
    ((u128::from(r.next_u64()) * u128::from(n)) >> 64) as u64
}

/// True with probability `p`.
pub fn chance(r: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
}

/// Uniform in `[0, 1)`.
pub fn unit(r: &mut ChaCha8Rng) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
