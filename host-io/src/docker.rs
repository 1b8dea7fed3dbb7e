//! Containers Docker restarts come back in a new network namespace, without `ethwe`. The
//! daemon follows Docker's event stream (the Engine API on its unix socket) and attaches a
//! restarted container again with the addresses it had; a removed container's record is
//! dropped. Without Docker nothing happens (the watcher retries quietly).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::attach;

/// `filters={"type":["container"],"event":["start","destroy"]}`, URL-encoded.
const FILTERS: &str = "%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22destroy%22%5D%7D";

/// Where the Docker Engine API listens: `DOCKER_HOST=unix://…`, or the default socket.
fn socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Starts the watcher thread for the attachments recorded under `state_dir`.
pub(crate) fn watch(state_dir: PathBuf, bridge: String) {
    let spawned = std::thread::Builder::new().name("docker-events".into()).spawn(move || {
        let mut told = false;
        loop {
            // Containers restarted while nobody watched (weave itself was down) come back too.
            reattach_all(&state_dir, &bridge);
            if let Err(e) = follow(&socket(), |action, id, name| on_event(&state_dir, &bridge, action, id, name)) {
                if !told {
                    tracing::info!(error = %e, "not following Docker's events (is dockerd running?); retrying every 10s");
                    told = true;
                }
            }
            std::thread::sleep(Duration::from_secs(10));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the Docker event watcher");
    }
}

/// Whether a recorded target names the container `id` (full or short id) or `name`.
pub(crate) fn names_container(target: &str, id: &str, name: &str) -> bool {
    target == id || (target.len() >= 12 && id.starts_with(target)) || target == name || target == format!("/{name}")
}

/// Whether a recorded target is a Docker container (not a namespace or a process).
fn is_container(target: &str) -> bool {
    !(target.starts_with("netns:") || target.starts_with("pid:") || target.starts_with('/'))
}

fn on_event(dir: &Path, bridge: &str, action: &str, id: &str, name: &str) {
    for a in attach::load(dir).into_iter().filter(|a| is_container(&a.target) && names_container(&a.target, id, name)) {
        match action {
            "start" => reattach(dir, bridge, &a),
            "destroy" => {
                if let Err(e) = attach::unrecord(dir, &a.target, &[]) {
                    tracing::warn!(target = %a.target, error = %e, "cannot forget a removed container");
                }
            }
            _ => {}
        }
    }
}

fn reattach(dir: &Path, bridge: &str, a: &attach::Attachment) {
    match attach::attach(bridge, &a.cidrs, &a.target) {
        Ok(mac) => {
            tracing::info!(container = %a.target, cidrs = ?a.cidrs, "container (re)started: attached again");
            if let Err(e) = attach::record(dir, &a.target, &mac, &a.cidrs) {
                tracing::warn!(container = %a.target, error = %e, "cannot record the attachment");
            }
        }
        Err(e) => tracing::warn!(container = %a.target, error = %e, "cannot attach the restarted container"),
    }
}

/// Attaches again every recorded container that runs without its interface.
fn reattach_all(dir: &Path, bridge: &str) {
    for a in attach::load(dir).into_iter().filter(|a| is_container(&a.target)) {
        // A container that is not running (or gone) is skipped: resolving it fails.
        if crate::plumb::resolve_target(&a.target).is_ok() {
            reattach(dir, bridge, &a);
        }
    }
}

/// Reads Docker's event stream until it ends, calling `f(action, id, name)` per event.
fn follow(sock: &Path, mut f: impl FnMut(&str, &str, &str)) -> Result<(), String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    // HTTP/1.0: the answer streams until the connection closes, without chunked framing.
    write!(s, "GET /events?filters={FILTERS} HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(format!("Docker answered `{}`", line.trim()));
    }
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 || line.trim().is_empty() {
            break;
        }
    }
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("Docker closed the event stream".into());
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let action = v["Action"].as_str().unwrap_or_default();
        let id = v["Actor"]["ID"].as_str().unwrap_or_default();
        let name = v["Actor"]["Attributes"]["name"].as_str().unwrap_or_default();
        if !id.is_empty() {
            f(action, id, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_a_container_by_id_short_id_or_name() {
        let id = "3f2a9c1d7e5b4a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c";
        assert!(names_container(id, id, "web"));
        assert!(names_container(&id[..12], id, "web"));
        assert!(names_container("web", id, "web"));
        assert!(!names_container("3f2a", id, "web"), "too short an id prefix is not a match");
        assert!(!names_container("db", id, "web"));
        assert!(!is_container("netns:c1") && !is_container("pid:42") && is_container("web"));
    }
}
