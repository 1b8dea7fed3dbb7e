//! State kept across restarts: the peer name and the peers to connect to.

use std::path::{Path, PathBuf};

use router_core::PeerName;

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
            None => match std::fs::read_to_string(&path) {
                Ok(s) => s.trim().parse().map_err(|e| format!("{}: {e}", path.display()))?,
                Err(_) => {
                    let mut b = [0u8; 6];
                    getrandom::getrandom(&mut b).map_err(|e| format!("no randomness for a peer name: {e}"))?;
                    b[0] = (b[0] & 0xfe) | 0x02; // unicast, locally administered
                    PeerName(b)
                }
            },
        };
        std::fs::write(&path, format!("{name}\n")).map_err(|e| format!("cannot save {}: {e}", path.display()))?;
        Ok(name)
    }

    /// The saved peers.
    pub(crate) fn peers(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("peers"))
            .map(|s| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
            .unwrap_or_default()
    }

    /// Saves the peers.
    pub(crate) fn save_peers(&self, peers: &[String]) -> Result<(), String> {
        let path = self.dir.join("peers");
        let mut text = peers.join("\n");
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| format!("cannot save {}: {e}", path.display()))
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
