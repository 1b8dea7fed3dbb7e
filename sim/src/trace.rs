//! The event trace: a running hash of every event (the run's fingerprint), and optionally a
//! JSON-lines file or the list of per-event hashes (to find where two runs part ways).

use std::fs::File;
use std::io::{BufWriter, Write};

/// Mixes one 64-bit word into a hash.
#[inline]
pub fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// Hashes bytes, eight at a time.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h, u64::from_le_bytes(last))
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    /// The running hash.
    pub hash: u64,
    /// Events recorded.
    pub count: u64,
    file: Option<BufWriter<File>>,
    hashes: Option<Vec<u64>>,
    describe_at: Option<u64>,
    /// The description of the event numbered `describe_at`, once reached.
    pub described: Option<String>,
}

impl Trace {
    /// A trace that keeps only the hash.
    pub fn new() -> Self {
        Trace { hash: 0x1234_5678_9abc_def0, count: 0, file: None, hashes: None, describe_at: None, described: None }
    }

    /// Also writes every event to a JSON-lines file.
    pub fn with_file(mut self, f: File) -> Self {
        self.file = Some(BufWriter::new(f));
        self
    }

    /// Also keeps the hash after every event.
    pub fn with_hashes(mut self) -> Self {
        self.hashes = Some(Vec::new());
        self
    }

    /// Also keeps the description of event number `n`.
    pub fn describing(mut self, n: u64) -> Self {
        self.describe_at = Some(n);
        self
    }

    /// Whether descriptions are wanted for the current event.
    pub fn verbose(&self) -> bool {
        self.file.is_some() || self.describe_at == Some(self.count)
    }

    /// Records one event: its time, kind, host and a digest of its content. `describe` builds
    /// the JSON description, and is called only when someone will read it.
    pub fn record(&mut self, t_us: u64, kind: u8, host: u32, digest: u64, describe: impl FnOnce() -> String) {
        let mut h = mix(self.hash, t_us);
        h = mix(h, u64::from(kind) << 32 | u64::from(host));
        h = mix(h, digest);
        self.hash = h;
        if self.verbose() {
            let line = describe();
            if self.describe_at == Some(self.count) {
                self.described = Some(line.clone());
            }
            if let Some(f) = &mut self.file {
                // A failed trace write must not change the run; it is reported at the end.
                let _ = writeln!(f, "{line}");
            }
        }
        if let Some(v) = &mut self.hashes {
            v.push(h);
        }
        self.count += 1;
    }

    /// The per-event hashes, if kept.
    pub fn hashes(&self) -> Option<&[u64]> {
        self.hashes.as_deref()
    }

    /// Flushes the file.
    pub fn finish(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}
