//! The router daemon: Linux plumbing, capture, the HTTP API and the state directory around
//! the event loop in `weave_host_io::eventloop`.

use std::net::{SocketAddr, ToSocketAddrs};

use router_core::crypto::DATAGRAM_OVERHEAD;
use router_core::wire::datagram::{FRAMES_HEADER_LEN, FRAME_PREFIX_LEN};
use router_core::{Config, Instant, PeerName, Random, Router};
use tokio::sync::mpsc;
use weave_host_io::eventloop::{self, Command};
use weave_host_io::outlet::Writer;
use weave_host_io::stack::Tokio;

use crate::api::{self, ApiCmd};
use crate::capture;
use crate::plumb;
use crate::state::State;
use crate::RouterArgs;
use zeroize::Zeroizing;

/// Resolves `host[:port]` with the default port.
pub(crate) fn parse_peer(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    weave_host_io::control::check_peer(s)?;
    let with_port = if s.parse::<SocketAddr>().is_ok()
        || s.rsplit_once(':').is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
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

/// The IPv4 and UDP headers around every datagram.
const IP_UDP: usize = 28;
/// The underlay MTU assumed when no interface tells.
const UNDERLAY_MTU_DEFAULT: u32 = 1500;

/// Sets what the flags say in `c`.
fn apply_flags(args: &RouterArgs, c: &mut Config) {
    c.tcp_port = args.port;
    c.udp_port = args.port;
    c.conn_limit = args.conn_limit;
    c.discovery = !args.no_discovery;
    c.flood_rate = args.flood_rate;
    c.flood_rate_total = args.flood_rate_total;
}

/// Refuses settings no router can run with, before anything is made or written: the same
/// check the core makes (`Config::validate`) on what the flags set.
pub(crate) fn check_args(args: &RouterArgs) -> Result<(), String> {
    let mut c = Config::new(args.name.unwrap_or(PeerName::from_u64(0x0200_0000_0001)));
    apply_flags(args, &mut c);
    c.validate().map_err(|e| match e {
        router_core::ConfigError::BadName(n) => format!("--name {n}: {e}"),
        router_core::ConfigError::Range { field, .. } => format!("--{}: {e}", field.replace('_', "-")),
        e => e.to_string(),
    })?;
    if !args.http_addr.ip().is_loopback() && !args.http_public {
        return Err(format!(
            "--http-addr {}: the status API stays on this host (loopback) unless --http-public is given",
            args.http_addr
        ));
    }
    if args.port == 0 {
        return Err("--port 0: give a port from 1 to 65535".into());
    }
    if args.mtu.is_some_and(|m| m < 576) {
        return Err(format!("--mtu {}: the smallest is 576", args.mtu.unwrap_or(0)));
    }
    crate::ipam::config(args, args.peers.len())?;
    Ok(())
}

/// The MTU of the route towards `to` as the kernel knows it (its interface's, the route's
/// own, or a path MTU it learned); none without a route. Nothing is sent.
fn mtu_towards(to: SocketAddr) -> Option<u32> {
    let s = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    s.connect(to).ok()?;
    let m = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::IpMtu).ok()?;
    u32::try_from(m).ok()
}

/// Key material from the operating system.
struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        // Without the OS's randomness no key can be made safely: stopping is the only answer.
        getrandom::getrandom(dest).expect("the operating system's random source failed");
    }
}

/// Runs the router in the foreground until SIGTERM, SIGINT or `weave stop`.
pub(crate) async fn run(args: RouterArgs, password: Option<Zeroizing<Vec<u8>>>) -> Result<(), String> {
    let password = password.map(|p| crate::secret::to_password(&p));
    if !args.http_addr.ip().is_loopback() {
        tracing::warn!(addr = %args.http_addr, "the read-only status API is served beyond this host (--http-public)");
    }
    let nl = plumb::connect().await.map_err(|e| e.to_string())?;
    // The ceiling of path MTU discovery: the MTU of the underlay towards the peers (the
    // smallest of the routes to those given and saved), else the host's largest interface
    // MTU, less the IP and UDP headers. The largest frame must fit one datagram: that less
    // our headers (and, encrypted, the counter and tag).
    let saved = crate::state::lines(&args.state_dir.join("peers")).unwrap_or_default();
    let towards =
        args.peers.iter().chain(&saved).filter_map(|p| parse_peer(p, args.port).ok()).filter_map(mtu_towards).min();
    let underlay = match towards {
        Some(m) => m,
        None => {
            plumb::underlay_mtu(&nl, &args.bridge).await.map_err(|e| e.to_string())?.unwrap_or(UNDERLAY_MTU_DEFAULT)
        }
    };
    let datagram_max = (underlay as usize).saturating_sub(IP_UDP).min(65_507);
    let overhead = FRAMES_HEADER_LEN + FRAME_PREFIX_LEN + 14 + if password.is_some() { DATAGRAM_OVERHEAD } else { 0 };
    let mtu_max = datagram_max.saturating_sub(overhead) as u32;
    let mtu = args.mtu.unwrap_or(mtu_max);
    if mtu > mtu_max || mtu < 576 {
        let how = if password.is_some() { "with encryption" } else { "without encryption" };
        return Err(format!(
            "--mtu {mtu} is out of range: between 576 and {mtu_max} {how} (the underlay interface's MTU is {underlay})"
        ));
    }
    tracing::info!(underlay, mtu, "MTU: the underlay's, and the bridge's and containers'");
    if let Some(c) = crate::ipam::config(&args, args.peers.len())? {
        let clash = plumb::routes_overlapping(&nl, c.range, &args.bridge).await.map_err(|e| e.to_string())?;
        if !clash.is_empty() {
            return Err(format!(
                "--ipalloc-range {} overlaps this host's routes ({}): containers would get addresses the host reaches elsewhere; choose another range with --ipalloc-range (or \"\" for none)",
                c.range,
                clash.join(", ")
            ));
        }
    }
    let state = State::open(&args.state_dir)?;
    let name = state.peer_name(args.name)?;
    // Held until the process exits: one router per bridge.
    let _lock = lock_bridge(&args.bridge)?;
    std::fs::write(state.pid_file(), format!("{}\n", std::process::id()))
        .map_err(|e| format!("cannot write pid file: {e}"))?;
    let made = match plumb::ensure_bridge(&nl, &args.bridge, mtu, plumb::bridge_mac(name.0)).await {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(state.pid_file());
            return Err(format!("setting up bridge {}: {e}", args.bridge));
        }
    };
    let r = serve(args.clone(), password, name, mtu, datagram_max, &state).await;
    if r.is_err() {
        // A start that failed leaves nothing it made behind.
        plumb::undo_bridge(&nl, &args.bridge, made).await;
    }
    let _ = std::fs::remove_file(state.pid_file());
    r
}

/// A peer given as an address (`a.b.c.d[:port]`), which needs no resolving.
fn literal_peer(p: &str, default_port: u16) -> Option<SocketAddr> {
    p.parse::<SocketAddr>().ok().or_else(|| p.parse::<std::net::Ipv4Addr>().ok().map(|ip| (ip, default_port).into()))
}

/// Resolves a peer's name on a blocking thread until it resolves, with the backoff the
/// router redials addresses with (1 s, doubling to 60 s), then has the loop connect to it.
/// Meanwhile `status targets` lists it with the last error, and the log says so at the
/// 1st, 2nd, 4th… failure.
async fn resolve_later(name: String, port: u16, tx: mpsc::Sender<Command>, unresolved: api::Unresolved) {
    let defaults = Config::new(PeerName::from_u64(0x0200_0000_0001));
    let mut delay = defaults.backoff_min;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let n = name.clone();
        let work = tokio::task::spawn_blocking(move || parse_peer(&n, port));
        let r = match tokio::time::timeout(std::time::Duration::from_secs(10), work).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("resolving `{name}` took longer than 10 s")),
        };
        match r {
            Ok(addr) => {
                if let Ok(mut m) = unresolved.lock() {
                    m.remove(&name);
                }
                tracing::info!(peer = %name, %addr, attempts, "peer name resolved");
                let cmd: Command = Box::new(move |r, now| {
                    if let Err(e) = r.connect(now, addr) {
                        tracing::warn!(%addr, error = %e, "not connecting");
                    }
                    false
                });
                let _ = tx.send(cmd).await;
                return;
            }
            Err(e) => {
                if attempts.is_power_of_two() {
                    tracing::warn!(peer = %name, attempts, "{e}; trying again");
                }
                if let Ok(mut m) = unresolved.lock() {
                    m.insert(name.clone(), (attempts, e));
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(defaults.backoff_max);
    }
}

/// Takes the lock that makes one router per bridge (in this network namespace): a second
/// router on the bridge would capture the first's frames. The lock file holds the holder's
/// pid; the lock goes with the process.
fn lock_bridge(bridge: &str) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let netns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);
    let dir = std::path::Path::new("/run/weave");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("bridge-{netns}-{bridge}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        format!(
            "bridge {bridge} is served by another weave router (pid {}): `weave stop` it, or launch with another \
             --bridge",
            holder.trim()
        )
    })?;
    f.set_len(0).and_then(|()| write!(f, "{}", std::process::id())).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(f)
}

/// Everything after the bridge: capture, API, the router and its loop, until it stops.
async fn serve(
    args: RouterArgs,
    password: Option<router_core::Password>,
    name: PeerName,
    mtu: u32,
    datagram_max: usize,
    state: &State,
) -> Result<(), String> {
    let ports = plumb::Ports::of(&args.bridge);
    let bridge_counters = std::sync::Arc::new(capture::BridgeCounters::default());
    let (frames, mut injector, backend) = capture::open_port(&ports.pcap, mtu, args.capture, &bridge_counters)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data_threads = args.data_threads.unwrap_or(if cores >= 4 { 2 } else { 1 });
    tracing::info!(port = %ports.pcap, backend, data_threads, "capturing");
    let (api_tx, mut api_rx) = mpsc::channel::<ApiCmd>(64);
    let info = api::DaemonInfo {
        state_dir: args.state_dir.clone(),
        bridge: args.bridge.clone(),
        port: args.port,
        pid: std::process::id(),
        mtu,
        data_path: format!(
            "{backend} on {} (port {} of bridge {}), TCP segments and checksums completed in userspace, {}",
            ports.pcap,
            ports.bridge_side,
            args.bridge,
            if data_threads > 1 { "frames and datagrams written on a thread of their own" } else { "one thread" }
        ),
        bridge_counters,
    };
    let unresolved = api::Unresolved::default();
    let started = api::Started::default();
    let http = api::serve(args.http_addr, api_tx, info.clone(), unresolved.clone(), started.clone()).await?;
    if let Err(e) = crate::firewall::install(&args.bridge) {
        tracing::warn!("firewall rules not installed: {e}");
    }
    crate::expose::restore(&info).await;
    // API requests, peers whose names resolve later and Docker's removals become commands
    // for the loop.
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(64);
    let removals = cmd_tx.clone();
    let release: crate::docker::Release = Box::new(move |id: &str| {
        let id = id.to_owned();
        let cmd: Command = Box::new(move |r, now| {
            let gone = r.release(now, &id, None);
            if !gone.is_empty() {
                tracing::info!(container = %id, addresses = ?gone, "container removed: addresses freed");
            }
            false
        });
        let _ = removals.blocking_send(cmd);
    });
    crate::docker::watch(args.state_dir.clone(), args.bridge.clone(), release);

    let mut cfg = Config::new(name);
    cfg.nickname = args
        .nickname
        .clone()
        .unwrap_or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default());
    apply_flags(&args, &mut cfg);
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    cfg.seed = u64::from_le_bytes(seed);
    cfg.datagram_max = datagram_max;
    let encrypted = password.is_some();
    cfg.password = password;
    // The peers named at launch, now or at an earlier launch (saved): a restart must count
    // the same majority as the first start did.
    let named = {
        let mut all = state.peers()?;
        all.extend(args.peers.iter().cloned());
        all.sort();
        all.dedup();
        all.len()
    };
    cfg.ipam = crate::ipam::config(&args, named)?;
    let mut router = Router::with_random(Instant::ZERO, cfg, Box::new(OsRandom)).map_err(|e| e.to_string())?;
    if router.ipam().is_some() {
        if let Some(saved) = crate::ipam::load(&args.state_dir)? {
            router.restore_ipam(Instant::ZERO, saved).map_err(|e| e.to_string())?;
        }
    }
    let waiters = crate::ipam::Waiters::new(crate::ipam::Saver::start(args.state_dir.clone(), cmd_tx.clone()));
    let mut peers = state.peers()?;
    for p in &args.peers {
        if !peers.contains(p) {
            peers.push(p.clone());
        }
    }
    state.save_peers(&peers)?;
    for p in &peers {
        if let Err(e) = weave_host_io::control::check_peer(p) {
            tracing::warn!("{e}: not connecting");
            continue;
        }
        match literal_peer(p, args.port) {
            Some(a) => {
                if let Err(e) = router.connect(Instant::ZERO, a) {
                    tracing::warn!(peer = %p, error = %e, "not connecting");
                }
            }
            None => {
                tokio::spawn(resolve_later(p.clone(), args.port, cmd_tx.clone(), unresolved.clone()));
            }
        }
    }
    tracing::info!(%name, port = args.port, bridge = %args.bridge, encrypted, "router started");

    let w = waiters.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(c) = api_rx.recv().await {
            let w = w.clone();
            let cmd: Command = Box::new(move |r, now| api::handle(c, r, now, &w));
            if cmd_tx.send(cmd).await.is_err() {
                break;
            }
        }
    });
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let _ = started.set(std::time::SystemTime::now());
    // Under systemd (`Type=notify`): the API answers and the router runs from here on.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("telling the service manager we are ready failed: {e}");
    }
    let on_event = |r: &Router, e: &router_core::Event| crate::ipam::on_event(r, e, &waiters);
    let threaded = data_threads > 1;
    let outlet = move |udp| Writer::new::<Tokio>(move |f: &[&[u8]]| injector.inject(f), udp, threaded);
    eventloop::run::<Tokio, _>(router, args.port, frames, outlet, on_event, cmd_rx, shutdown)
        .await
        .map_err(|e| format!("cannot open port {}: {e}", args.port))?;
    tracing::info!("router stopping");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    forwarder.abort();
    // Let the API answer the request that stopped us.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    http.abort();
    Ok(())
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
