//! Docker, through its Engine API (`bollard`, on the socket `DOCKER_HOST` names or the
//! default one): a container's process (to find its network namespace), removal, and the
//! event stream. Containers Docker restarts come back in a new network namespace, without
//! `ethwe`: the daemon follows the events and attaches a restarted container again with the
//! addresses it had; a removed container's record is dropped and its allocated addresses
//! freed. Without Docker nothing happens
//! (the watcher retries quietly). `weave run` alone uses the `docker` command, as `docker run`
//! takes the Docker CLI's own arguments, which the Engine API does not parse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::{EventsOptions, RemoveContainerOptions};
use bollard::Docker;
use futures::StreamExt;

use crate::attach;

/// Runs `f` against the Docker daemon on a runtime of its own (callers are synchronous).
fn with_docker<T>(f: impl AsyncFnOnce(Docker) -> Result<T, String>) -> Result<T, String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| format!("cannot reach Docker: {e}"))?;
    let rt = crate::plumb::runtime().map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(f(docker))
}

/// The process id of a running container (by id or name).
pub(crate) fn container_pid(target: &str) -> Result<u32, String> {
    let info = with_docker(async |d| {
        d.inspect_container(target, None)
            .await
            .map_err(|e| format!("no container, network namespace or process `{target}`: {e}"))
    })?;
    match info.state.and_then(|s| s.pid).unwrap_or(0) {
        0 => Err(format!("container {target} is not running")),
        pid => u32::try_from(pid).map_err(|_| format!("container {target} has no process")),
    }
}

/// A container's full id (by id, short id or name).
pub(crate) fn container_id(target: &str) -> Result<String, String> {
    let info = with_docker(async |d| {
        d.inspect_container(target, None).await.map_err(|e| format!("no container `{target}`: {e}"))
    })?;
    info.id.ok_or_else(|| format!("container {target} has no id"))
}

/// Removes a container, running or not.
pub(crate) fn remove(id: &str) -> Result<(), String> {
    with_docker(async |d| {
        let force = RemoveContainerOptions { force: true, ..Default::default() };
        d.remove_container(id, Some(force)).await.map_err(|e| format!("cannot remove container {id}: {e}"))
    })
}

/// Frees the addresses the allocator gave a removed container (by its full id).
pub(crate) type Release = Box<dyn Fn(&str) + Send>;

/// Starts the watcher thread for the attachments recorded under `state_dir`.
pub(crate) fn watch(state_dir: PathBuf, bridge: String, release: Release) {
    let spawned = std::thread::Builder::new().name("docker-events".into()).spawn(move || {
        let mut told = false;
        loop {
            // Containers restarted while nobody watched (weave itself was down) come back too.
            reattach_all(&state_dir, &bridge);
            if let Err(e) = follow(|action, id, name| on_event(&state_dir, &bridge, action, id, name, &release)) {
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

/// The recorded attachments, or none (and a warning) when the file cannot be read.
fn recorded(dir: &Path) -> Vec<attach::Attachment> {
    attach::load(dir).unwrap_or_else(|e| {
        tracing::warn!("Docker containers are not followed: {e}");
        Vec::new()
    })
}

fn on_event(dir: &Path, bridge: &str, action: &str, id: &str, name: &str, release: &Release) {
    if action == "destroy" {
        release(id);
    }
    for a in recorded(dir).into_iter().filter(|a| is_container(&a.target) && names_container(&a.target, id, name)) {
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
    for a in recorded(dir).into_iter().filter(|a| is_container(&a.target)) {
        // A container that is not running (or gone) is skipped: resolving it fails.
        if crate::plumb::resolve_target(&a.target).is_ok() {
            reattach(dir, bridge, &a);
        }
    }
}

/// Reads Docker's container start and destroy events until the stream ends, calling
/// `f(action, id, name)` per event. `f` runs outside the stream's runtime: it may talk to
/// Docker and netlink through runtimes of its own.
fn follow(mut f: impl FnMut(&str, &str, &str)) -> Result<(), String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| format!("cannot reach Docker: {e}"))?;
    let rt = crate::plumb::runtime().map_err(|e| format!("cannot start a runtime: {e}"))?;
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["start".to_string(), "destroy".to_string()]),
    ]);
    let mut events = docker.events(Some(EventsOptions { filters: Some(filters), ..Default::default() }));
    while let Some(e) = rt.block_on(events.next()) {
        let e = e.map_err(|e| format!("Docker's event stream: {e}"))?;
        let action = e.action.unwrap_or_default();
        let Some(actor) = e.actor else { continue };
        let id = actor.id.unwrap_or_default();
        let name = actor.attributes.as_ref().and_then(|a| a.get("name")).map(String::as_str).unwrap_or_default();
        if !id.is_empty() {
            f(&action, &id, name);
        }
    }
    Err("Docker closed the event stream".into())
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
