//! State kept across restarts: the peer name, the peers to connect to, attachments, exposed
//! subnets and the address allocator's state, each a file in the state directory.
//!
//! Every file is replaced whole (a temporary file beside it, flushed to disk, renamed over it,
//! the directory flushed), so a crash leaves the old file or the new one, never a part; and a
//! change that reads a file first does so under the directory's lock, so the CLI and the
//! daemon's Docker watcher never undo each other's changes.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use router_core::PeerName;

/// The files weave keeps in a state directory; `weave reset` removes these and nothing else.
pub(crate) const FILES: [&str; 8] =
    ["peer-name", "peers", "attachments.json", "exposed", "ipam.json", "router.pid", "router.log", ".lock"];

/// Writes `bytes` to `path` atomically (see the module documentation).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |what: &str, e: std::io::Error| format!("cannot save {}: {what}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| fail("creating a temporary file", e))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("writing", e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Runs `f` holding the exclusive lock of state directory `dir` (waiting for it).
pub(crate) fn locked<T>(dir: &Path, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open the lock {}: {e}", path.display()))?;
    let lock =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| format!("cannot lock {}: {e}", path.display()))?;
    let r = f();
    drop(lock);
    r
}

/// A state file's text: `None` when it does not exist; an error saying what to do when it
/// cannot be read.
pub(crate) fn read(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The error for a state file that does not parse: weave never replaces it.
pub(crate) fn corrupt(path: &Path, why: impl std::fmt::Display) -> String {
    format!(
        "{} is corrupt ({why}); weave leaves it as it is: repair it, or move it aside to start that part of the state afresh",
        path.display()
    )
}

/// The state directory.
#[derive(Debug, Clone)]
pub(crate) struct State {
    dir: PathBuf,
}

impl State {
    /// Opens (creating) the state directory.
    pub(crate) fn open(dir: &Path) -> Result<State, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))?;
        Ok(State { dir: dir.to_path_buf() })
    }

    /// Our peer name: `given`, else the saved one, else a new random one; saved either way.
    pub(crate) fn peer_name(&self, given: Option<PeerName>) -> Result<PeerName, String> {
        let path = self.dir.join("peer-name");
        let name = match given {
            Some(n) => n,
            None => match read(&path)? {
                Some(s) => s.trim().parse().map_err(|e| corrupt(&path, e))?,
                None => {
                    let mut b = [0u8; 6];
                    getrandom::getrandom(&mut b).map_err(|e| format!("no randomness for a peer name: {e}"))?;
                    b[0] = (b[0] & 0xfe) | 0x02; // unicast, locally administered
                    PeerName(b)
                }
            },
        };
        write_atomic(&path, format!("{name}\n").as_bytes())?;
        Ok(name)
    }

    /// The saved peers.
    pub(crate) fn peers(&self) -> Result<Vec<String>, String> {
        lines(&self.dir.join("peers"))
    }

    /// Saves the peers.
    pub(crate) fn save_peers(&self, peers: &[String]) -> Result<(), String> {
        save_lines(&self.dir.join("peers"), peers)
    }

    /// Where the daemon's pid is kept.
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("router.pid")
    }

    /// Where `weave launch` sends the daemon's log.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join("router.log")
    }
}

/// The non-empty lines of a state file (none when it does not exist).
pub(crate) fn lines(path: &Path) -> Result<Vec<String>, String> {
    Ok(read(path)?
        .map(|s| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default())
}

/// Saves `lines` as a state file, one a line.
pub(crate) fn save_lines(path: &Path, lines: &[String]) -> Result<(), String> {
    let mut text = lines.join("\n");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Removes what weave keeps in state directory `dir`, and the directory when nothing else is
/// in it; anything else there stays.
pub(crate) fn remove(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    for f in FILES {
        match std::fs::remove_file(dir.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", dir.join(f).display())),
        }
    }
    // Temporary files a crash left behind (`write_atomic`'s).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // Only when empty: a directory that holds anything else was not weave's alone.
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_whole_and_reset_keeps_what_is_not_weaves() {
        let dir = std::env::temp_dir().join(format!("weave-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let st = State::open(&dir).unwrap();
        st.save_peers(&["10.0.0.1".into(), "10.0.0.2".into()]).unwrap();
        assert_eq!(st.peers().unwrap(), vec!["10.0.0.1".to_string(), "10.0.0.2".into()]);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file is left: {left:?}");
        // A corrupt peer name is reported with its path, and left alone.
        std::fs::write(dir.join("peer-name"), "not a name\n").unwrap();
        let e = st.peer_name(None).unwrap_err();
        assert!(e.contains("peer-name is corrupt") && e.contains("move it aside"), "{e}");
        assert_eq!(std::fs::read_to_string(dir.join("peer-name")).unwrap(), "not a name\n");
        // Reset removes weave's files; a directory with something else in it stays.
        std::fs::write(dir.join("mine.txt"), "keep").unwrap();
        std::fs::write(dir.join(".peers.tmp-1"), "a crash left this").unwrap();
        let n = locked(&dir, || Ok(1)).unwrap();
        assert_eq!(n, 1);
        remove(&dir).unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("mine.txt")]);
        std::fs::remove_file(dir.join("mine.txt")).unwrap();
        remove(&dir).unwrap();
        assert!(!dir.exists());
    }
}
