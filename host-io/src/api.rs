//! The HTTP API on `--http-addr`: status (text and JSON), connect, forget, stop, metrics.
//! Handlers ask the event loop, which owns the router, through a channel. What may block
//! (name resolution, the `iptables` command, file locks) runs on tokio's blocking threads,
//! never on the loop's: a resolver that does not answer delays that request only.

use std::net::SocketAddr;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as Http};
use router_core::{Instant, Router, Status};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

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
        /// The outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop connecting to peers.
    Forget {
        /// The peers' addresses, resolved.
        peers: Vec<SocketAddr>,
        /// The outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop the router.
    Stop(oneshot::Sender<()>),
}

/// Body of `POST /connect` and `POST /forget`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PeersBody {
    /// Peers as `host[:port]`.
    pub(crate) peers: Vec<String>,
    /// For connect: forget every other peer.
    #[serde(default)]
    pub(crate) replace: bool,
}

fn save_targets(router: &Router, state: &State) -> Result<(), String> {
    let peers: Vec<String> = router.targets().map(|a| a.to_string()).collect();
    state.save_peers(&peers)
}

/// Carries out one command; returns true when the router must stop.
pub(crate) fn handle(cmd: ApiCmd, router: &mut Router, now: Instant, state: &State) -> bool {
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
                save_targets(router, state)
            })();
            let _ = reply.send(r);
        }
        ApiCmd::Forget { peers, reply } => {
            let r = (|| {
                for a in peers {
                    router.forget(now, a).map_err(|e| e.to_string())?;
                }
                save_targets(router, state)
            })();
            let _ = reply.send(r);
        }
        ApiCmd::Stop(reply) => {
            let _ = reply.send(());
            return true;
        }
    }
    false
}

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
        Some(s) => text::status(&s).into_response(),
        None => unavailable(),
    }
}

async fn status_section(AxState(tx): AxState<App>, Path(section): Path<String>) -> Response {
    let Some(s) = snapshot(&tx).await else { return unavailable() };
    match section.as_str() {
        "peers" => text::peers(&s).into_response(),
        "connections" => text::connections(&s).into_response(),
        "targets" => text::targets(&s).into_response(),
        other => (StatusCode::NOT_FOUND, format!("no status section `{other}`: use peers, connections or targets\n"))
            .into_response(),
    }
}

async fn report(AxState(tx): AxState<App>) -> Response {
    match snapshot(&tx).await {
        Some(s) => Json(s).into_response(),
        None => unavailable(),
    }
}

async fn metrics(AxState(tx): AxState<App>) -> Response {
    match snapshot(&tx).await {
        Some(s) => {
            ([(axum::http::header::CONTENT_TYPE, text::METRICS_CONTENT_TYPE)], text::metrics(&s)).into_response()
        }
        None => unavailable(),
    }
}

async fn peers_cmd(tx: App, body: PeersBody, connect: bool) -> Response {
    let peers = match resolve(body.peers, tx.info.port).await {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (reply, rx) = oneshot::channel();
    let cmd =
        if connect { ApiCmd::Connect { peers, replace: body.replace, reply } } else { ApiCmd::Forget { peers, reply } };
    if tx.tx.send(cmd).await.is_err() {
        return unavailable();
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n").into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(_) => unavailable(),
    }
}

async fn connect(AxState(tx): AxState<App>, Json(b): Json<PeersBody>) -> Response {
    peers_cmd(tx, b, true).await
}

async fn forget(AxState(tx): AxState<App>, Json(b): Json<PeersBody>) -> Response {
    peers_cmd(tx, b, false).await
}

async fn stop(AxState(tx): AxState<App>) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx.tx.send(ApiCmd::Stop(reply)).await.is_err() {
        return unavailable();
    }
    let _ = rx.await;
    (StatusCode::OK, "stopping\n").into_response()
}

async fn config(AxState(app): AxState<App>) -> Response {
    Json(app.info.clone()).into_response()
}

/// Body of `POST /expose` and `POST /hide`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CidrBody {
    /// An address with prefix for the bridge, like 10.32.0.254/24.
    pub(crate) cidr: String,
}

async fn expose_or_hide(app: App, body: CidrBody, on: bool) -> Response {
    match crate::expose::set(&app.info, &body.cidr, on).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

async fn expose(AxState(app): AxState<App>, Json(b): Json<CidrBody>) -> Response {
    expose_or_hide(app, b, true).await
}

async fn hide(AxState(app): AxState<App>, Json(b): Json<CidrBody>) -> Response {
    expose_or_hide(app, b, false).await
}

/// Serves the API; the returned task runs until aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    tx: mpsc::Sender<ApiCmd>,
    info: DaemonInfo,
) -> Result<JoinHandle<()>, String> {
    let app = Http::new()
        .route("/config", get(config))
        .route("/expose", post(expose))
        .route("/hide", post(hide))
        .route("/status", get(status_text))
        .route("/status/:section", get(status_section))
        .route("/report", get(report))
        .route("/metrics", get(metrics))
        .route("/connect", post(connect))
        .route("/forget", post(forget))
        .route("/stop", post(stop))
        .with_state(App { tx, info });
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot serve the HTTP API on {addr}: {e} (is another router running? try --http-addr)")
    })?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    }))
}
