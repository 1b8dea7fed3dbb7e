//! `weave`: the router daemon and the command line its users know.

mod addrs;
mod api;
mod attach;
mod capture;
mod daemon;
mod docker;
mod expose;
mod firewall;
mod ipam;
mod packet;
mod plumb;
mod secret;
mod state;
mod text;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use router_core::PeerName;
use weave_host_io::control::{ControlAnswer, ControlRequest};

#[derive(Parser)]
#[command(name = "weave", version, about = "One virtual Ethernet across many hosts")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Flags of `weave launch` and `weave router`.
#[derive(Args, Debug, Clone)]
pub(crate) struct RouterArgs {
    /// Peer name (MAC-like, aa:bb:cc:dd:ee:ff); default: saved in the state directory, or random.
    #[arg(long)]
    pub(crate) name: Option<PeerName>,
    /// Nickname shown to other peers (default: host name).
    #[arg(long)]
    pub(crate) nickname: Option<String>,
    /// TCP and UDP port.
    #[arg(long, default_value_t = 6783)]
    pub(crate) port: u16,
    /// File holding the network's password: peers must know it, and all traffic is encrypted.
    /// WEAVE_PASSWORD also works. (A password is never taken from the command line.)
    #[arg(long)]
    pub(crate) password_file: Option<PathBuf>,
    /// Read the password from standard input (how `weave launch` hands it to the daemon).
    #[arg(long, hide = true)]
    pub(crate) password_stdin: bool,
    /// MTU of the bridge and containers' interfaces. Default: what the underlay interface
    /// carries, less weave's overhead (68 bytes; 92 encrypted).
    #[arg(long)]
    pub(crate) mtu: Option<u32>,
    /// Bridge name.
    #[arg(long, default_value = "weave")]
    pub(crate) bridge: String,
    /// Where the peer name and peers are kept.
    #[arg(long, default_value = "/var/lib/weave")]
    pub(crate) state_dir: PathBuf,
    /// Address of the read-only HTTP API (status, report, metrics); loopback unless
    /// --http-public.
    #[arg(long, default_value = "127.0.0.1:6784", env = "WEAVE_HTTP_ADDR")]
    pub(crate) http_addr: SocketAddr,
    /// Serve the read-only HTTP API on an address other hosts can reach.
    #[arg(long)]
    pub(crate) http_public: bool,
    /// Most control connections.
    #[arg(long, default_value_t = 100)]
    pub(crate) conn_limit: usize,
    /// Broadcast, multicast and unknown-unicast frames per second that each local source MAC
    /// may flood (in bursts of a tenth of that); sources not yet learned share one such
    /// budget. Beyond it, frames are dropped and counted (`flood_limited`).
    #[arg(long, default_value_t = 1000)]
    pub(crate) flood_rate: u32,
    /// The same, for all local sources together; a source that flooded nothing for a second
    /// always gets through.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) flood_rate_total: u32,
    /// How frames leave and enter the bridge: `packet` sockets carrying offload metadata
    /// (64 KiB super-frames both ways), `pcap`, or `auto` (packet sockets where the kernel
    /// supports them). `weave status` shows which is in use.
    #[arg(long, value_enum, default_value = "auto", env = "WEAVE_CAPTURE")]
    pub(crate) capture: capture::CaptureMode,
    /// Threads of the data path: 2 writes injected frames and sent datagrams on a thread of
    /// their own while the router reads and forwards the next ones; 1 does everything on one.
    /// Default: 2 on hosts with at least 4 cores (on fewer, the second thread takes the core
    /// the kernel's forwarding and the containers need).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2), env = "WEAVE_DATA_THREADS")]
    pub(crate) data_threads: Option<u8>,
    /// Do not dial peers learned from gossip.
    #[arg(long)]
    pub(crate) no_discovery: bool,
    /// The range the address allocator hands addresses out of ("" turns it off).
    #[arg(long, default_value = "10.32.0.0/12")]
    pub(crate) ipalloc_range: String,
    /// Where `weave attach` and `weave run` without an address take one (default: the range).
    #[arg(long)]
    pub(crate) ipalloc_default_subnet: Option<String>,
    /// How many peers start the network together (a majority of them must meet before the
    /// first addresses are handed out). Default: the peers named here, and this one.
    #[arg(long)]
    pub(crate) ipalloc_init_peers: Option<usize>,
    /// How long a peer stays unreachable before a majority of the allocator's voters reclaim
    /// the address space it does not use (blocks with addresses in use stay its own), e.g.
    /// `10m` or `90s`; `0` turns automatic reclaim off.
    #[arg(long, default_value = "10m", value_parser = parse_grace)]
    pub(crate) ipalloc_reclaim_after: Duration,
    /// Log level.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub(crate) log_level: String,
    /// Peers to connect to, as HOST or HOST:PORT.
    pub(crate) peers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
struct ApiArgs {
    /// Address of the router's HTTP API.
    #[arg(long, default_value = "127.0.0.1:6784", env = "WEAVE_HTTP_ADDR")]
    http_addr: SocketAddr,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates the bridge, starts the router in the background, prints the peer name.
    Launch(RouterArgs),
    /// Runs the router in the foreground (for systemd).
    Router(RouterArgs),
    /// Connects to more peers.
    Connect {
        #[command(flatten)]
        api: ApiArgs,
        /// Forget every other peer first.
        #[arg(long)]
        replace: bool,
        /// Peers as HOST or HOST:PORT.
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Stops connecting to peers.
    Forget {
        #[command(flatten)]
        api: ApiArgs,
        /// Peers as HOST or HOST:PORT.
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Attaches a container: `weave attach [ADDRESS...] TARGET` (ADDRESS: CIDR, ip:CIDR, net:CIDR or
    /// net:default; none: one from the allocator. TARGET: container, pid:N, netns:NAME or a path).
    Attach {
        /// Bridge name.
        #[arg(long, default_value = "weave")]
        bridge: String,
        /// Attach even an address another target holds (or the bridge, exposed).
        #[arg(long)]
        force: bool,
        /// Addresses, then the target.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// `docker run -d` then attach: `weave run [ADDRESS...] <docker run args>`; prints the container id.
    Run {
        /// Bridge name.
        #[arg(long, default_value = "weave")]
        bridge: String,
        /// Attach even an address another target holds (or the bridge, exposed).
        #[arg(long)]
        force: bool,
        /// Addresses, then the arguments of `docker run`.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Detaches addresses (all, when none are given) from a container and frees those the
    /// allocator gave: `weave detach [CIDR...] TARGET`.
    Detach {
        /// CIDRs, then the target.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Takes over the address space of a peer that is gone for good (run it on one peer only).
    Rmpeer {
        #[command(flatten)]
        api: ApiArgs,
        /// The gone peer's name (see `weave status ipam`).
        peer: String,
    },
    /// Gives the bridge an address in CIDR (the host reaches containers) and NATs the subnet.
    Expose {
        #[command(flatten)]
        api: ApiArgs,
        /// The bridge's address, like 10.32.0.254/24.
        cidr: String,
    },
    /// Undoes `weave expose`.
    Hide {
        #[command(flatten)]
        api: ApiArgs,
        /// The address given to `weave expose`.
        cidr: String,
    },
    /// Lists attached containers: target, MAC, CIDRs (first line: the bridge, `weave:expose`).
    Ps {
        #[command(flatten)]
        api: ApiArgs,
        /// Only these targets.
        targets: Vec<String>,
    },
    /// Shows the router's state: overview, or peers, connections, targets or ipam.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// peers, connections, targets or ipam.
        section: Option<String>,
    },
    /// Prints the router's full state as JSON.
    Report {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stops the router (containers keep their interfaces).
    Stop {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stops the router and removes the bridge and its state.
    Reset {
        #[command(flatten)]
        api: ApiArgs,
        /// Bridge name.
        #[arg(long, default_value = "weave")]
        bridge: String,
        /// State directory to remove.
        #[arg(long, default_value = "/var/lib/weave")]
        state_dir: PathBuf,
    },
    /// Prints the version.
    Version,
}

fn api_url(a: &SocketAddr, path: &str) -> String {
    format!("http://{a}{path}")
}

fn not_running(a: &SocketAddr) -> String {
    format!("no weave router answers on {a}: start one with `weave launch` (or give --http-addr)")
}

fn get(a: &SocketAddr, path: &str) -> Result<String, String> {
    match ureq::get(&api_url(a, path)).timeout(Duration::from_secs(5)).call() {
        Ok(r) => r.into_string().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(_, r)) => Err(r.into_string().unwrap_or_default().trim().to_string()),
        Err(_) => Err(not_running(a)),
    }
}

/// Sends one request on the router's control socket (root only) and returns its answer.
fn control(a: &SocketAddr, req: &ControlRequest) -> Result<String, String> {
    use std::io::{BufRead, Write};
    use std::os::linux::net::SocketAddrExt;
    let name = api::control_name(a);
    let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| e.to_string())?;
    let mut s = std::os::unix::net::UnixStream::connect_addr(&sa).map_err(|_| not_running(a))?;
    // Name resolution may take the router up to 10 s; expose runs iptables; an allocation
    // waits up to 30 s for space.
    s.set_read_timeout(Some(Duration::from_secs(45))).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line).map_err(|e| format!("sending to the router: {e}"))?;
    let mut answer = String::new();
    std::io::BufReader::new(s).read_line(&mut answer).map_err(|e| format!("waiting for the router: {e}"))?;
    match serde_json::from_str(&answer) {
        Ok(ControlAnswer::Ok(s)) => Ok(s),
        Ok(ControlAnswer::Error(e)) => Err(e),
        Err(_) => Err(format!("unexpected answer from the router: {}", answer.trim())),
    }
}

fn default_api() -> SocketAddr {
    std::env::var("WEAVE_HTTP_ADDR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6784)))
}

/// How long `weave stop` waits for the router to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops the router, and returns once it has exited and its API address is free (so a
/// `weave launch` right after finds nothing in its way).
fn stop(api: &ApiArgs) -> Result<(), String> {
    let pid = daemon_info(api).ok().map(|i| i.pid).filter(|&p| p > 0);
    control(&api.http_addr, &ControlRequest::Stop {})?;
    let alive = |p: u32| {
        // A zombie has exited: only its entry waits for its parent.
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        status.lines().any(|l| l.starts_with("State:") && !l.contains("Z (zombie)"))
    };
    let started = std::time::Instant::now();
    loop {
        let running = pid.is_some_and(alive);
        let answering = std::net::TcpStream::connect_timeout(&api.http_addr, Duration::from_millis(200)).is_ok();
        if !running && !answering {
            return Ok(());
        }
        if started.elapsed() > STOP_TIMEOUT {
            let who = pid.map_or("the router".to_string(), |p| format!("the router (pid {p})"));
            let end = pid.map_or(String::new(), |p| format!("; `kill -9 {p}` ends it"));
            return Err(format!(
                "{who} has not exited within {}s of being asked to stop: see its log{end}",
                STOP_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The running router's state directory, or the default one.
fn state_dir() -> PathBuf {
    daemon_info(&ApiArgs { http_addr: default_api() })
        .map(|i| i.state_dir)
        .unwrap_or_else(|_| PathBuf::from("/var/lib/weave"))
}

fn daemon_info(api: &ApiArgs) -> Result<api::DaemonInfo, String> {
    let r = get(&api.http_addr, "/config")?;
    serde_json::from_str(&r).map_err(|e| format!("unexpected answer from the router: {e}"))
}

fn init_logs(level: &str) {
    use std::io::IsTerminal;
    // netlink-packet-route warns about attributes newer kernels add; they are harmless.
    let spec = format!("{level},netlink_packet_route=error");
    let filter =
        tracing_subscriber::EnvFilter::try_new(spec).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn need_root(what: &str) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(format!("{what} needs root (it creates network interfaces): run it with sudo"))
    }
}

/// Above this, `launch` starts the log afresh, keeping the old one as `router.log.1`.
const LOG_MAX: u64 = 16 << 20;

/// The router's log, opened for appending: a launch, failed or not, never erases what an
/// earlier router wrote. One that has grown past [`LOG_MAX`] is moved to `router.log.1` first.
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_MAX) {
        std::fs::rename(path, path.with_extension("log.1"))?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

fn router(args: RouterArgs) -> Result<(), String> {
    need_root("weave router")?;
    daemon::check_args(&args)?;
    let password = secret::read(&args)?;
    if let (true, Some(p)) = (secret::from_env(&args), &password) {
        // The variable is in this process's initial environment, which /proc/PID/environ
        // shows for its whole life: start again without it.
        return Err(secret::reexec_without_env(p));
    }
    init_logs(&args.log_level);
    let rt = plumb::runtime().map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(daemon::run(args, password))
}

fn launch(args: RouterArgs) -> Result<(), String> {
    need_root("weave launch")?;
    daemon::check_args(&args)?;
    // Read here so a bad file fails `launch` itself; handed to the daemon on its stdin, never
    // in its argv or environment.
    let password = secret::read(&args)?;
    if get(&args.http_addr, "/report").is_ok() {
        return Err(format!("a weave router already answers on {}: `weave stop` it first", args.http_addr));
    }
    let st = state::State::open(&args.state_dir)?;
    let log = open_log(&st.log_file()).map_err(|e| {
        format!(
            "cannot create {}: {e} (the state directory must be writable: see --state-dir)",
            st.log_file().display()
        )
    })?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("router")
        .args(["--port", &args.port.to_string(), "--bridge", &args.bridge])
        .arg("--state-dir")
        .arg(&args.state_dir)
        .args(["--http-addr", &args.http_addr.to_string(), "--conn-limit", &args.conn_limit.to_string()])
        .args(["--flood-rate", &args.flood_rate.to_string()])
        .args(["--flood-rate-total", &args.flood_rate_total.to_string()])
        .args(["--log-level", &args.log_level])
        .args(["--capture", args.capture.to_possible_value().expect("no variant is skipped").get_name()]);
    if let Some(n) = args.data_threads {
        cmd.args(["--data-threads", &n.to_string()]);
    }
    if let Some(n) = args.name {
        cmd.args(["--name", &n.to_string()]);
    }
    if let Some(m) = args.mtu {
        cmd.args(["--mtu", &m.to_string()]);
    }
    if args.http_public {
        cmd.arg("--http-public");
    }
    if let Some(n) = &args.nickname {
        cmd.args(["--nickname", n]);
    }
    if args.no_discovery {
        cmd.arg("--no-discovery");
    }
    cmd.args(["--ipalloc-range", &args.ipalloc_range]);
    if let Some(s) = &args.ipalloc_default_subnet {
        cmd.args(["--ipalloc-default-subnet", s]);
    }
    if let Some(n) = args.ipalloc_init_peers {
        cmd.args(["--ipalloc-init-peers", &n.to_string()]);
    }
    cmd.args(["--ipalloc-reclaim-after", &format!("{}ms", args.ipalloc_reclaim_after.as_millis())]);
    if password.is_some() {
        cmd.arg("--password-stdin");
    }
    cmd.env_remove(secret::ENV).arg("--").args(&args.peers);
    use std::os::unix::process::CommandExt;
    let stdin = if password.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() };
    cmd.process_group(0).stdin(stdin).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the router: {e}"))?;
    if let Some(pw) = &password {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let sent = pipe.write_all(pw).and_then(|()| pipe.flush());
        drop(pipe);
        if let Err(e) = sent {
            let _ = child.kill();
            return Err(format!("cannot hand the password to the router: {e}"));
        }
    }
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read(st.log_file()).unwrap_or_default();
            // This launch's lines only: the log is appended to.
            let log = String::from_utf8_lossy(log.get(log_start as usize..).unwrap_or_default());
            let tail: Vec<&str> = log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(format!("the router exited ({status}):\n{}", tail.join("\n")));
        }
        if let Ok(r) = get(&args.http_addr, "/report") {
            let v: serde_json::Value = serde_json::from_str(&r).map_err(|e| e.to_string())?;
            print_out(&format!("{}\n", v["name"].as_str().unwrap_or_default()));
            return Ok(());
        }
    }
    let _ = child.kill();
    Err(format!("the router did not answer on {} within 10s; see {}", args.http_addr, st.log_file().display()))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Launch(a) => launch(a),
        Cmd::Router(a) => router(a),
        Cmd::Connect { api, replace, peers } => {
            control(&api.http_addr, &ControlRequest::Connect { peers, replace }).map(|_| ())
        }
        Cmd::Forget { api, peers } => control(&api.http_addr, &ControlRequest::Forget { peers }).map(|_| ()),
        Cmd::Attach { bridge, force, args } => {
            need_root("weave attach")?;
            let (addrs, target) = args.split_at(args.len() - 1);
            let (specs, used) = addrs::leading(addrs)?;
            if used != addrs.len() {
                return Err(format!(
                    "`{}` is not an address: give CIDR, ip:CIDR, net:CIDR or net:default",
                    addrs[used]
                ));
            }
            let target = &target[0];
            let key = ipam_key(target)?;
            let api = default_api();
            let ask = |r: &ControlRequest| control(&api, r);
            let cidrs = addrs::resolve(&specs, &key, &ask)?;
            let dir = state_dir();
            let attached = (|| {
                if !force {
                    attach::check_free(&dir, &bridge, &cidrs, Some(target))?;
                }
                let mac = attach::attach(&bridge, &cidrs, target)?;
                attach::record(&dir, target, &mac, &cidrs)
            })();
            if attached.is_err() {
                addrs::release(&key, &allocated_only(&specs, &cidrs), &ask);
            }
            attached?;
            if specs.iter().any(|s| matches!(s, addrs::Spec::Net(_))) {
                print_out(&format!("{}\n", cidrs.join(" ")));
            }
            Ok(())
        }
        Cmd::Run { bridge, force, args } => {
            need_root("weave run")?;
            let (specs, n) = addrs::leading(&args)?;
            let docker = &args[n..];
            if docker.is_empty() {
                return Err("no image given: usage is weave run [ADDRESS...] <docker run args>".into());
            }
            let dir = state_dir();
            let chosen: Vec<String> = specs
                .iter()
                .filter_map(|s| match s {
                    addrs::Spec::Ip(c) => Some(c.to_string()),
                    addrs::Spec::Net(_) => None,
                })
                .collect();
            if !force {
                attach::check_free(&dir, &bridge, &chosen, None)?;
            }
            let out = std::process::Command::new("docker")
                .args(["run", "-d"])
                .args(docker)
                .output()
                .map_err(|e| format!("cannot run docker: {e}"))?;
            if !out.status.success() {
                return Err(format!("docker run failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let api = default_api();
            let ask = |r: &ControlRequest| control(&api, r);
            let attached = addrs::resolve(&specs, &id, &ask).and_then(|cidrs| {
                let mac = attach::attach(&bridge, &cidrs, &id)?;
                attach::record(&dir, &id, &mac, &cidrs)
            });
            match attached {
                Ok(()) => {
                    print_out(&format!("{id}\n"));
                    Ok(())
                }
                Err(e) => {
                    // Nothing half-created is left behind.
                    addrs::release(&id, &[], &ask);
                    if let Err(rm) = docker::remove(&id) {
                        return Err(format!("{e}; and the container was not removed: {rm}"));
                    }
                    Err(format!("{e} (the container was removed)"))
                }
            }
        }
        Cmd::Detach { args } => {
            need_root("weave detach")?;
            let (cidrs, target) = args.split_at(args.len() - 1);
            attach::detach(cidrs, &target[0])?;
            if let Ok(info) = daemon_info(&ApiArgs { http_addr: default_api() }) {
                attach::unrecord(&info.state_dir, &target[0], cidrs)?;
                // A container already gone is freed by the daemon when Docker reports it.
                if let Ok(key) = ipam_key(&target[0]) {
                    let api = default_api();
                    addrs::release(&key, cidrs, &|r| control(&api, r));
                }
            }
            Ok(())
        }
        Cmd::Status { api, section } => {
            let path = match section.as_deref() {
                None => "/status".to_string(),
                Some(s @ ("peers" | "connections" | "targets" | "ipam")) => format!("/status/{s}"),
                Some(other) => {
                    return Err(format!("unknown status section `{other}`: use peers, connections, targets or ipam"))
                }
            };
            print_out(&get(&api.http_addr, &path)?);
            Ok(())
        }
        Cmd::Report { api } => {
            let r = get(&api.http_addr, "/report")?;
            let v: serde_json::Value = serde_json::from_str(&r).map_err(|e| e.to_string())?;
            print_out(&format!("{}\n", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?));
            Ok(())
        }
        Cmd::Stop { api } => stop(&api),
        Cmd::Rmpeer { api, peer } => {
            print_out(&format!("{}\n", control(&api.http_addr, &ControlRequest::Rmpeer { peer })?));
            Ok(())
        }
        Cmd::Expose { api, cidr } => {
            attach::parse_cidr(&cidr)?;
            control(&api.http_addr, &ControlRequest::Expose { cidr }).map(|_| ())
        }
        Cmd::Hide { api, cidr } => {
            attach::parse_cidr(&cidr)?;
            control(&api.http_addr, &ControlRequest::Hide { cidr }).map(|_| ())
        }
        Cmd::Ps { api, targets } => {
            let info = daemon_info(&api)?;
            print_out(&attach::ps(&info, &targets)?);
            Ok(())
        }
        Cmd::Reset { api, bridge, state_dir } => {
            need_root("weave reset")?;
            if get(&api.http_addr, "/report").is_ok() {
                // The allocator's space goes to the peers that stay; a moment lets the
                // hand-over leave before the connections close.
                if control(&api.http_addr, &ControlRequest::Leave {}).is_ok() {
                    std::thread::sleep(Duration::from_millis(300));
                }
                stop(&api)?;
            }
            let rt = plumb::runtime().map_err(|e| format!("cannot start a runtime: {e}"))?;
            rt.block_on(async {
                let h = plumb::connect().await.map_err(|e| e.to_string())?;
                plumb::remove_bridge(&h, &bridge).await.map_err(|e| e.to_string())
            })?;
            firewall::uninstall(&bridge);
            // Only what weave keeps there: `--state-dir` may name a directory that holds
            // more.
            state::remove(&state_dir)
        }
        Cmd::Version => {
            print_out(&format!("weave {}\n", env!("CARGO_PKG_VERSION")));
            Ok(())
        }
    }
}

/// The allocator's key for a target: a Docker container's full id (so its name, short id
/// and id ask for the same addresses), else the target as given.
fn ipam_key(target: &str) -> Result<String, String> {
    if target.starts_with("netns:") || target.starts_with("pid:") || target.starts_with('/') {
        Ok(target.to_owned())
    } else {
        docker::container_id(target)
    }
}

/// Of `cidrs` (resolved from `specs`, in order), those the allocator handed out.
fn allocated_only(specs: &[addrs::Spec], cidrs: &[String]) -> Vec<String> {
    specs.iter().zip(cidrs).filter(|(s, _)| matches!(s, addrs::Spec::Net(_))).map(|(_, c)| c.clone()).collect()
}

/// Writes to standard output; a reader that went away (`weave status | head -3`) ends the
/// command quietly, as it ends other Unix tools.
fn print_out(s: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("weave: writing the output: {e}");
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weave: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A duration such as `10m`, `90s` or `0`.
fn parse_grace(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{s}: {e} (give a duration such as 10m or 90s, or 0 for off)"))
}
