//! The HTTP API on `--http-addr`: status (text and JSON), connect, forget, stop, metrics.
//! Handlers ask the event loop, which owns the router, through a channel.

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
        /// Peers as `host[:port]`.
        peers: Vec<String>,
        /// Forget every other peer.
        replace: bool,
        /// The outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop connecting to peers.
    Forget {
        /// Peers as `host[:port]`.
        peers: Vec<String>,
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
pub(crate) fn handle(cmd: ApiCmd, router: &mut Router, now: Instant, state: &State, port: u16) -> bool {
    match cmd {
        ApiCmd::Status(reply) => {
            let _ = reply.send(router.status(now));
        }
        ApiCmd::Connect { peers, replace, reply } => {
            let r = (|| {
                let addrs = peers.iter().map(|p| parse_peer(p, port)).collect::<Result<Vec<_>, _>>()?;
                if replace {
                    let old: Vec<SocketAddr> = router.targets().collect();
                    for a in old {
                        router.forget(now, a).map_err(|e| e.to_string())?;
                    }
                }
                for a in addrs {
                    router.connect(now, a).map_err(|e| e.to_string())?;
                }
                save_targets(router, state)
            })();
            let _ = reply.send(r);
        }
        ApiCmd::Forget { peers, reply } => {
            let r = (|| {
                for p in &peers {
                    let a = parse_peer(p, port)?;
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
    let (reply, rx) = oneshot::channel();
    let cmd = if connect {
        ApiCmd::Connect { peers: body.peers, replace: body.replace, reply }
    } else {
        ApiCmd::Forget { peers: body.peers, reply }
    };
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
