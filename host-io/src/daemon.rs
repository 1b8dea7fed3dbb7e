//! The router daemon: one tokio task owns the core; it reads an input, hands it to the core,
//! drains every output, and re-arms one timer from `poll_timeout`.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant as StdInstant;

use router_core::{Config, ConnEvent, ConnId, Destination, Event, Instant, Router, TRANSMIT_BUF_MIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::{self, ApiCmd};
use crate::capture;
use crate::plumb;
use crate::state::State;
use crate::RouterArgs;

/// Most TCP connections accepted per second.
const ACCEPTS_PER_SECOND: u32 = 100;

/// Inputs from the helper tasks.
pub(crate) enum Input {
    Frame(Vec<u8>),
    Accepted(TcpStream, SocketAddr),
    Dialled(ConnId, std::io::Result<TcpStream>),
    Bytes(ConnId, Vec<u8>),
    Closed(ConnId),
}

struct ConnIo {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: Option<JoinHandle<()>>,
}

/// Resolves `host[:port]` with the default port.
pub(crate) fn parse_peer(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let with_port = if s.parse::<SocketAddr>().is_ok() || s.rsplit_once(':').is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok()) {
        s.to_string()
    } else {
        format!("{s}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve peer `{s}`: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("peer `{s}` has no IPv4 address"))
}

/// Runs the router in the foreground until SIGTERM, SIGINT or `weave stop`.
pub(crate) async fn run(args: RouterArgs) -> Result<(), String> {
    let state = State::open(&args.state_dir)?;
    let name = state.peer_name(args.name)?;
    std::fs::write(state.pid_file(), format!("{}\n", std::process::id())).map_err(|e| format!("cannot write pid file: {e}"))?;
    let nl = plumb::connect().await.map_err(|e| e.to_string())?;
    plumb::ensure_bridge(&nl, &args.bridge, args.mtu).await.map_err(|e| format!("setting up bridge {}: {e}", args.bridge))?;

    let udp = UdpSocket::bind(("0.0.0.0", args.port)).await.map_err(|e| format!("cannot bind UDP port {}: {e}", args.port))?;
    let tcp = TcpListener::bind(("0.0.0.0", args.port)).await.map_err(|e| format!("cannot listen on TCP port {}: {e}", args.port))?;
    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let mut injector = capture::start(plumb::PCAP_PORT, tx.clone()).map_err(|e| format!("capture on {}: {e}", plumb::PCAP_PORT))?;
    let (api_tx, mut api_rx) = mpsc::channel::<ApiCmd>(64);
    let info = api::DaemonInfo { state_dir: args.state_dir.clone(), bridge: args.bridge.clone() };
    let http = api::serve(args.http_addr, api_tx, info).await?;
    if let Err(e) = crate::firewall::install(&args.bridge) {
        tracing::warn!("firewall rules not installed: {e}");
    }

    let epoch = StdInstant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut cfg = Config::new(name);
    cfg.nickname = args.nickname.clone().unwrap_or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default());
    cfg.tcp_port = args.port;
    cfg.udp_port = args.port;
    cfg.conn_limit = args.conn_limit;
    cfg.discovery = !args.no_discovery;
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    cfg.seed = u64::from_le_bytes(seed);
    // Room for our headers inside the underlay MTU (1500 - IP - UDP).
    cfg.datagram_max = 1472;
    let mut router = Router::new(now(), cfg);
    let mut peers = state.peers();
    for p in &args.peers {
        if !peers.contains(p) {
            peers.push(p.clone());
        }
    }
    state.save_peers(&peers)?;
    for p in &peers {
        match parse_peer(p, args.port) {
            Ok(a) => {
                if let Err(e) = router.connect(now(), a) {
                    tracing::warn!(peer = %p, error = %e, "not connecting");
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
    tracing::info!(%name, port = args.port, bridge = %args.bridge, "router started");

    let accept_tx = tx.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((s, a)) => {
                    if accept_tx.send(Input::Accepted(s, a)).await.is_err() {
                        break;
                    }
                    // Accept rate limit: at most ACCEPTS_PER_SECOND, so a flood of connection
                    // attempts cannot starve the router.
                    tokio::time::sleep(std::time::Duration::from_secs(1) / ACCEPTS_PER_SECOND).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Accept errors (out of descriptors) must not spin: back off briefly.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });

    let mut conns: HashMap<ConnId, ConnIo> = HashMap::new();
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    let mut udp_buf = vec![0u8; 65_536];
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    loop {
        let deadline = router.poll_timeout().map(|t| epoch + std::time::Duration::from_micros(t.as_micros()));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = udp.recv_from(&mut udp_buf) => match r {
                Ok((n, from)) => router.handle_datagram(now(), from, &udp_buf[..n]),
                Err(e) => tracing::debug!(error = %e, "UDP receive error"),
            },
            Some(input) = rx.recv() => match input {
                Input::Frame(f) => router.handle_frame(now(), &f),
                Input::Accepted(s, a) => {
                    let id = router.accept(now(), a);
                    conns.insert(id, spawn_conn(id, s, tx.clone()));
                }
                Input::Dialled(id, Ok(s)) => {
                    conns.insert(id, spawn_conn(id, s, tx.clone()));
                    router.handle_conn_event(now(), id, ConnEvent::Connected);
                }
                Input::Dialled(id, Err(e)) => {
                    tracing::debug!(conn = %id, error = %e, "dial failed");
                    router.handle_conn_event(now(), id, ConnEvent::Closed);
                }
                Input::Bytes(id, b) => router.handle_stream(now(), id, &b),
                Input::Closed(id) => {
                    conns.remove(&id);
                    router.handle_conn_event(now(), id, ConnEvent::Closed);
                }
            },
            Some(cmd) = api_rx.recv() => {
                if api::handle(cmd, &mut router, now(), &state, args.port) {
                    break;
                }
            }
            () = sleep => router.handle_timeout(now()),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        // Drain every output.
        while let Some(t) = router.poll_transmit(&mut buf) {
            let bytes = &buf[..t.len];
            match t.dest {
                Destination::Bridge => injector.inject(bytes),
                Destination::Udp(to) => {
                    if let Err(e) = udp.try_send_to(bytes, to) {
                        tracing::debug!(%to, error = %e, "UDP send failed");
                    }
                }
                Destination::Conn(id) => {
                    if let Some(c) = conns.get(&id) {
                        let _ = c.writer.send(bytes.to_vec());
                    }
                }
            }
        }
        while let Some(e) = router.poll_event() {
            match e {
                Event::Dial { conn, addr } => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(std::time::Duration::from_secs(5), TcpStream::connect(addr))
                            .await
                            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")));
                        let _ = tx.send(Input::Dialled(conn, r)).await;
                    });
                }
                Event::Close { conn } => {
                    if let Some(c) = conns.remove(&conn) {
                        if let Some(r) = c.reader {
                            r.abort();
                        }
                        // Dropping the writer flushes what is queued, then closes.
                    }
                }
                Event::ConnectionDown { peer, reason, .. } => tracing::info!(?peer, %reason, "connection down"),
                Event::LinkEstablished { peer } => tracing::info!(%peer, "link established"),
                Event::LinkLost { peer, reason } => tracing::info!(%peer, %reason, "link lost"),
                _ => {}
            }
        }
    }
    tracing::info!("router stopping");
    acceptor.abort();
    // Let the API answer the request that stopped us.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    http.abort();
    let _ = std::fs::remove_file(state.pid_file());
    Ok(())
}

fn spawn_conn(id: ConnId, s: TcpStream, tx: mpsc::Sender<Input>) -> ConnIo {
    let _ = s.set_nodelay(true);
    let (mut rd, mut wr) = s.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut b = vec![0u8; 65_536];
        loop {
            match rd.read(&mut b).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Input::Closed(id)).await;
                    break;
                }
                Ok(n) => {
                    if tx.send(Input::Bytes(id, b[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    ConnIo { writer: wtx, reader: Some(reader) }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_take_the_default_port() {
        assert_eq!(parse_peer("10.0.0.1", 6783).unwrap(), "10.0.0.1:6783".parse().unwrap());
        assert_eq!(parse_peer("10.0.0.1:7000", 6783).unwrap(), "10.0.0.1:7000".parse().unwrap());
        assert!(parse_peer("no-such-host.invalid", 6783).is_err());
    }
}
