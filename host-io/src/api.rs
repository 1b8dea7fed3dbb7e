//! The read-only HTTP API on `--http-addr` (status in text and JSON, report, metrics,
//! config), and the control socket (connect, forget, expose, hide, stop) that only root may
//! use. Handlers ask the event loop, which owns the router, through a channel. What may block
//! (name resolution, the `iptables` command, file locks) runs on tokio's blocking threads,
//! never on the loop's: a resolver that does not answer delays that request only.

use std::net::SocketAddr;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router as Http};
use router_core::{Instant, Router, Status};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use weave_host_io::control::{ControlAnswer, ControlRequest};

use crate::daemon::parse_peer;
use crate::state::State;
use crate::text;

/// A request for the event loop.
pub(crate) enum ApiCmd {
    /// Take a status snapshot.
    Status(oneshot::Sender<Status>),
    /// Connect to peers (`replace`: forget the others first).
    Connect {
        /// The peers' addresses, resolved.
        peers: Vec<SocketAddr>,
        /// Forget every other peer.
        replace: bool,
        /// The outcome: the peers to keep in the state directory.
        reply: oneshot::Sender<Result<Targets, String>>,
    },
    /// Stop connecting to peers.
    Forget {
        /// The peers' addresses, resolved.
        peers: Vec<SocketAddr>,
        /// The outcome: the peers to keep in the state directory.
        reply: oneshot::Sender<Result<Targets, String>>,
    },
    /// Stop the router.
    Stop(oneshot::Sender<()>),
    /// An address from the allocator.
    Allocate {
        /// Who will hold it.
        target: String,
        /// Where from (the default subnet when `None`).
        subnet: Option<ipnet::Ipv4Net>,
        /// The address, now or once the allocator has space.
        reply: oneshot::Sender<crate::ipam::Answer>,
    },
    /// Record an address the user chose.
    Claim {
        /// Who holds it.
        target: String,
        /// The address.
        cidr: ipnet::Ipv4Net,
        /// What became of it.
        reply: oneshot::Sender<crate::ipam::Answer>,
    },
    /// Hand this peer's address space to the others (before `weave reset`).
    Leave(oneshot::Sender<crate::ipam::Answer>),
    /// Take over a gone peer's address space.
    Rmpeer {
        /// The peer.
        peer: router_core::PeerName,
        /// What was taken.
        reply: oneshot::Sender<crate::ipam::Answer>,
    },
    /// Free a target's addresses (all when `addrs` is empty).
    Release {
        /// Who held them.
        target: String,
        /// Which.
        addrs: Vec<std::net::Ipv4Addr>,
        /// What was freed.
        reply: oneshot::Sender<crate::ipam::Answer>,
    },
}

/// The router's peers after a change, numbered in the order the changes were made, so that
/// of two saved out of order the newer wins.
#[derive(Debug)]
pub(crate) struct Targets {
    version: u64,
    peers: Vec<String>,
}

fn targets(router: &Router) -> Targets {
    static VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let version = VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    Targets { version, peers: router.targets().map(|a| a.to_string()).collect() }
}

/// Saves `t` in the state directory (on a blocking thread, never the loop's) unless a newer
/// list was saved already.
async fn save_targets(app: &App, t: Targets) -> Result<(), String> {
    let (dir, saved) = (app.info.state_dir.clone(), app.saved.clone());
    let work = tokio::task::spawn_blocking(move || {
        let mut last = saved.lock().map_err(|_| "the peers file lock is poisoned".to_string())?;
        if t.version <= *last {
            return Ok(());
        }
        State::open(&dir)?.save_peers(&t.peers)?;
        *last = t.version;
        Ok(())
    });
    work.await.map_err(|e| format!("saving the peers failed: {e}"))?
}

/// Carries out one command; returns true when the router must stop.
pub(crate) fn handle(cmd: ApiCmd, router: &mut Router, now: Instant, waiters: &crate::ipam::Waiters) -> bool {
    match cmd {
        ApiCmd::Status(reply) => {
            let _ = reply.send(router.status(now));
        }
        ApiCmd::Connect { peers, replace, reply } => {
            let r = (|| {
                if replace {
                    let old: Vec<SocketAddr> = router.targets().collect();
                    for a in old {
                        router.forget(now, a).map_err(|e| e.to_string())?;
                    }
                }
                for a in peers {
                    router.connect(now, a).map_err(|e| e.to_string())?;
                }
                Ok(targets(router))
            })();
            let _ = reply.send(r);
        }
        ApiCmd::Forget { peers, reply } => {
            let r = (|| {
                for a in peers {
                    router.forget(now, a).map_err(|e| e.to_string())?;
                }
                Ok(targets(router))
            })();
            let _ = reply.send(r);
        }
        ApiCmd::Stop(reply) => {
            let _ = reply.send(());
            return true;
        }
        ApiCmd::Allocate { target, subnet, reply } => waiters.allocate(router, now, &target, subnet, reply),
        ApiCmd::Claim { target, cidr, reply } => waiters.claim(router, now, &target, cidr, reply),
        ApiCmd::Leave(reply) => {
            let n = router.ipam_leave(now);
            tracing::info!(blocks = n, "leaving: address space handed to the other peers");
            let _ = reply.send(Ok(format!("handed {n} blocks to the other peers")));
        }
        ApiCmd::Rmpeer { peer, reply } => {
            let r =
                router.rmpeer(now, peer).map(|n| format!("took over {n} blocks of {peer}")).map_err(|e| e.to_string());
            if let Ok(m) = &r {
                tracing::warn!(%peer, "rmpeer: {m}");
            }
            let _ = reply.send(r);
        }
        ApiCmd::Release { target, addrs, reply } => {
            let only = (!addrs.is_empty()).then_some(&addrs[..]);
            let gone = router.release(now, &target, only);
            let list: Vec<String> = gone.iter().map(ToString::to_string).collect();
            let _ = reply.send(Ok(list.join(" ")));
        }
    }
    false
}

/// Peers given by name that do not resolve yet: name → (attempts, the last error). The
/// daemon retries them (`daemon::resolve_later`); `status targets` lists them.
pub(crate) type Unresolved = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, (u32, String)>>>;

/// What the CLI needs to know about the running daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DaemonInfo {
    /// The state directory.
    pub(crate) state_dir: std::path::PathBuf,
    /// The bridge.
    pub(crate) bridge: String,
    /// The router's port (the default for peers given without one).
    #[serde(default = "default_port")]
    pub(crate) port: u16,
    /// The daemon's process id (0: not told).
    #[serde(default)]
    pub(crate) pid: u32,
    /// The MTU of the bridge and the containers' interfaces.
    #[serde(default)]
    pub(crate) mtu: u32,
    /// How frames enter and leave the bridge.
    #[serde(default)]
    pub(crate) data_path: String,
    /// What the data path counts at the bridge port (only in the daemon itself).
    #[serde(skip)]
    pub(crate) bridge_counters: std::sync::Arc<crate::capture::BridgeCounters>,
}

fn default_port() -> u16 {
    6783
}

/// How long resolving peer names may take before the request fails.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves `host[:port]` names on a blocking thread, within [`RESOLVE_TIMEOUT`].
async fn resolve(peers: Vec<String>, port: u16) -> Result<Vec<SocketAddr>, String> {
    let names = peers.join(" ");
    let work = tokio::task::spawn_blocking(move || peers.iter().map(|p| parse_peer(p, port)).collect());
    match tokio::time::timeout(RESOLVE_TIMEOUT, work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("resolving {names}: {e}")),
        Err(_) => Err(format!("resolving {names} took longer than {}s: check the resolver", RESOLVE_TIMEOUT.as_secs())),
    }
}

#[derive(Clone)]
struct App {
    tx: mpsc::Sender<ApiCmd>,
    info: DaemonInfo,
    /// The version of the peers list last saved.
    saved: std::sync::Arc<std::sync::Mutex<u64>>,
    unresolved: Unresolved,
    /// When the router's time was zero (set as its loop starts).
    started: Started,
}

/// When the router's time was zero, set as its loop starts.
pub(crate) type Started = std::sync::Arc<std::sync::OnceLock<std::time::SystemTime>>;

impl App {
    fn clock(&self) -> text::Clock {
        text::Clock { start: self.started.get().copied().unwrap_or_else(std::time::SystemTime::now) }
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the router is shutting down\n").into_response()
}

async fn snapshot(tx: &App) -> Option<Status> {
    let (reply, rx) = oneshot::channel();
    tx.tx.send(ApiCmd::Status(reply)).await.ok()?;
    rx.await.ok()
}

async fn status_text(AxState(tx): AxState<App>) -> Response {
    match snapshot(&tx).await {
        Some(s) => text::status(&s, &tx.info, &tx.clock()).into_response(),
        None => unavailable(),
    }
}

async fn status_section(AxState(tx): AxState<App>, Path(section): Path<String>) -> Response {
    let Some(s) = snapshot(&tx).await else { return unavailable() };
    match section.as_str() {
        "peers" => text::peers(&s).into_response(),
        "connections" => text::connections(&s, &tx.clock()).into_response(),
        "targets" => {
            let mut t = text::targets(&s);
            if let Ok(names) = tx.unresolved.lock() {
                t.push_str(&text::unresolved(&names));
            }
            t.into_response()
        }
        "ipam" => text::ipam(&s).into_response(),
        other => {
            (StatusCode::NOT_FOUND, format!("no status section `{other}`: use peers, connections, targets or ipam\n"))
                .into_response()
        }
    }
}

async fn report(AxState(tx): AxState<App>) -> Response {
    match snapshot(&tx).await {
        Some(s) => Json(tx.clock().report(&s)).into_response(),
        None => unavailable(),
    }
}

/// The metrics in OpenMetrics when the scraper asks for it (Prometheus does, by `Accept`),
/// else in Prometheus' text format 0.0.4.
async fn metrics(AxState(tx): AxState<App>, headers: axum::http::HeaderMap) -> Response {
    let Some(s) = snapshot(&tx).await else { return unavailable() };
    let open = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = text::metrics(&s, &tx.info.bridge_counters);
    if open {
        ([(axum::http::header::CONTENT_TYPE, text::METRICS_CONTENT_TYPE)], body).into_response()
    } else {
        ([(axum::http::header::CONTENT_TYPE, text::PROMETHEUS_CONTENT_TYPE)], text::prometheus_text(&body))
            .into_response()
    }
}

async fn config(AxState(app): AxState<App>) -> Response {
    Json(app.info.clone()).into_response()
}

/// Carries out one control request.
async fn control(app: &App, req: ControlRequest) -> Result<String, String> {
    let shutting = || "the router is shutting down".to_string();
    match req {
        ControlRequest::Connect { peers, replace } => {
            let peers = resolve(peers, app.info.port).await?;
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Connect { peers, replace, reply }).await.map_err(|_| shutting())?;
            save_targets(app, rx.await.map_err(|_| shutting())??).await.map(|()| "ok".into())
        }
        ControlRequest::Forget { peers } => {
            let peers = resolve(peers, app.info.port).await?;
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Forget { peers, reply }).await.map_err(|_| shutting())?;
            save_targets(app, rx.await.map_err(|_| shutting())??).await.map(|()| "ok".into())
        }
        ControlRequest::Expose { cidr } => crate::expose::set(&app.info, &cidr, true).await.map(|()| "ok".into()),
        ControlRequest::Hide { cidr } => crate::expose::set(&app.info, &cidr, false).await.map(|()| "ok".into()),
        ControlRequest::Stop {} => {
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Stop(reply)).await.map_err(|_| shutting())?;
            let _ = rx.await;
            Ok("stopping".into())
        }
        ControlRequest::Allocate { target, subnet } => {
            let subnet = subnet.map(|s| weave_host_io::control::parse_cidr(&s)).transpose()?;
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Allocate { target, subnet, reply }).await.map_err(|_| shutting())?;
            rx.await.map_err(|_| shutting())?
        }
        ControlRequest::Claim { target, cidr } => {
            let cidr = weave_host_io::control::parse_cidr(&cidr)?;
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Claim { target, cidr, reply }).await.map_err(|_| shutting())?;
            rx.await.map_err(|_| shutting())?
        }
        ControlRequest::Leave {} => {
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Leave(reply)).await.map_err(|_| shutting())?;
            rx.await.map_err(|_| shutting())?
        }
        ControlRequest::Rmpeer { peer } => {
            let peer = peer.parse().map_err(|_| format!("`{peer}` is not a peer name"))?;
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Rmpeer { peer, reply }).await.map_err(|_| shutting())?;
            rx.await.map_err(|_| shutting())?
        }
        ControlRequest::Release { target, cidrs } => {
            let addrs = cidrs
                .iter()
                .map(|c| weave_host_io::control::parse_cidr(c).map(|n| n.addr()))
                .collect::<Result<_, _>>()?;
            let (reply, rx) = oneshot::channel();
            app.tx.send(ApiCmd::Release { target, addrs, reply }).await.map_err(|_| shutting())?;
            rx.await.map_err(|_| shutting())?
        }
    }
}

/// The name of the control socket of the router whose read-only API is on `http_addr`: an
/// abstract Unix socket, so one per network namespace, found by the CLI from the same
/// address it reads status from.
pub(crate) fn control_name(http_addr: &SocketAddr) -> String {
    format!("weave-control@{http_addr}")
}

/// Serves one control connection: only root (by the kernel's word, `SO_PEERCRED`) may steer.
async fn control_conn(app: App, stream: tokio::net::UnixStream) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (r, mut w) = stream.into_split();
    // The request is read whatever the caller, so that a refusal reaches it as an answer,
    // not as a connection closed under its write.
    let mut line = String::new();
    let mut reader = BufReader::new(r.take(weave_host_io::control::REQUEST_MAX));
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no request within 5 s")));
    let answer = if uid != Some(0) {
        tracing::warn!(?uid, "control request from a user other than root refused");
        ControlAnswer::Error("only root may control the router".into())
    } else {
        match read {
            Err(e) => ControlAnswer::Error(format!("reading the request: {e}")),
            Ok(_) => match weave_host_io::control::parse_request(&line) {
                Err(e) => ControlAnswer::Error(e),
                Ok(req) => match control(&app, req).await {
                    Ok(s) => ControlAnswer::Ok(s),
                    Err(e) => ControlAnswer::Error(e),
                },
            },
        }
    };
    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}

/// Serves the API; the returned task runs until aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    tx: mpsc::Sender<ApiCmd>,
    info: DaemonInfo,
    unresolved: Unresolved,
    started: Started,
) -> Result<JoinHandle<()>, String> {
    let state = App { tx, info, saved: Default::default(), unresolved, started };
    let app = Http::new()
        .route("/config", get(config))
        .route("/status", get(status_text))
        .route("/status/:section", get(status_section))
        .route("/report", get(report))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot serve the HTTP API on {addr}: {e} (is another router running? try --http-addr)")
    })?;
    let name = control_name(&addr);
    let control = {
        use std::os::linux::net::SocketAddrExt;
        let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| e.to_string())?;
        let l = std::os::unix::net::UnixListener::bind_addr(&sa)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::UnixListener::from_std)
            .map_err(|e| format!("cannot open the control socket @{name}: {e} (is another router running?)"))?;
        l
    };
    let app_c = state;
    Ok(tokio::spawn(async move {
        let controls = async {
            loop {
                match control.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(control_conn(app_c.clone(), s));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        };
        tokio::select! {
            r = axum::serve(listener, app) => if let Err(e) = r {
                tracing::error!(error = %e, "HTTP API stopped");
            },
            () = controls => {}
        }
    }))
}
