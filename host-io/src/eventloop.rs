//! The router's event loop, generic over its sockets: tokio's on Linux, turmoil's in tests.
//!
//! One task owns the core: it takes one input (a captured frame, a datagram, bytes or an event
//! on a control connection, a command, or the deadline), hands it to the core, drains every
//! output into a stage that its outlet writes (`outlet`: here, or on a thread of its own), and
//! re-arms one timer from `poll_timeout`. Nothing runs while nothing happens.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use router_core::{ConnEvent, ConnId, Destination, DialFailure, Event, Instant, Router};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::outlet::{Outlet, Stage};
use crate::segment;

/// The sockets the loop needs.
pub trait Stack: 'static {
    /// A bound UDP socket.
    type Udp: Send + Sync + 'static;
    /// A TCP listener.
    type Listener: Send + Sync + 'static;
    /// A TCP stream.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Binds UDP.
    fn bind_udp(a: SocketAddr) -> impl Future<Output = io::Result<Self::Udp>> + Send;
    /// Receives one datagram or, where the stack coalesces them (UDP GRO), several from one
    /// source of one size back to back: returns the length, the source and the size of each
    /// datagram (the last may be shorter).
    fn recv<'a>(
        u: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr, usize)>> + Send + 'a;
    /// As [`Stack::recv`], if something is waiting (`WouldBlock` otherwise).
    fn try_recv(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)>;
    /// Sends one datagram without waiting.
    fn try_send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
    /// Path MTU reports waiting on the socket (the kernel's `EMSGSIZE`, or ICMP "fragmentation
    /// needed" from a router on the path): the destination and its path MTU (IP bytes).
    /// Stacks without such reports have none.
    fn path_mtu_reports(_u: &Self::Udp) -> Vec<(SocketAddr, usize)> {
        Vec::new()
    }
    /// Sends datagrams without waiting, as few system calls as the stack allows; returns how
    /// many went out (the rest found the socket buffer full and are dropped, as UDP may).
    fn send_batch(u: &Self::Udp, batch: &[(&[u8], SocketAddr)]) -> usize {
        batch.iter().take_while(|(b, to)| Self::try_send_to(u, b, *to).is_ok()).count()
    }
    /// Listens on TCP.
    fn listen(a: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Accepts one connection.
    fn accept(l: &Self::Listener) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + '_;
    /// Connects.
    fn connect(a: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Something to do with the router from outside (the HTTP API); returns true to stop.
pub type Command = Box<dyn FnOnce(&mut Router, Instant) -> bool + Send>;

/// Where captured frames come from: the bridge port (pcap, in the daemon) or a channel
/// (tests).
pub trait Frames {
    /// Waits until a frame may be waiting.
    fn ready(&mut self) -> impl Future<Output = ()> + Send;
    /// The next captured frame, if one is waiting now; the loop may change its bytes (it
    /// completes and cuts frames in place).
    fn next(&mut self) -> Option<&mut [u8]>;
    /// Where frames come as a container's stack handed them to its interface, with the
    /// kernel's offloads on (TCP segments of up to 64 KiB, checksums left partial): the
    /// MTU of the link they were captured on. The loop completes such frames (`segment`),
    /// cutting TCP segments once, to the smaller of this and what the path to the
    /// destination carries. `None` (the default): frames come complete.
    fn offloaded_mtu(&self) -> Option<usize> {
        None
    }
}

/// Frames handed over on a channel.
#[derive(Debug)]
pub struct ChannelFrames {
    rx: mpsc::Receiver<Vec<u8>>,
    held: Option<Vec<u8>>,
    cur: Vec<u8>,
}

impl ChannelFrames {
    /// Frames sent on `rx`'s channel.
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelFrames { rx, held: None, cur: Vec::new() }
    }
}

impl Frames for ChannelFrames {
    async fn ready(&mut self) {
        if self.held.is_none() {
            match self.rx.recv().await {
                Some(f) => self.held = Some(f),
                None => std::future::pending().await,
            }
        }
    }
    fn next(&mut self) -> Option<&mut [u8]> {
        self.cur = match self.held.take() {
            Some(f) => f,
            None => self.rx.try_recv().ok()?,
        };
        Some(&mut self.cur)
    }
}

/// Bytes of an Ethernet header (without VLAN tags).
const ETHERNET_HEADER: usize = 14;

/// Most datagrams, or captured frames, handled in one pass of the loop.
const BATCH: usize = 64;

/// Most TCP connections accepted per second.
const ACCEPTS_PER_SECOND: u32 = 100;

enum Input<T> {
    Accepted(T, SocketAddr),
    Dialled(ConnId, io::Result<T>),
    Bytes(ConnId, Vec<u8>),
    Closed(ConnId),
}

/// What woke the event loop.
enum Woke<T> {
    Udp(io::Result<(usize, SocketAddr, usize)>),
    Frames,
    Input(Input<T>),
    Command(Command),
    Timer,
    Shutdown,
}

/// The next datagram or burst of captured frames, whichever is ready, `udp_first` deciding
/// when both are.
async fn next_data<S: Stack, T>(udp: &S::Udp, buf: &mut [u8], frames: &mut impl Frames, udp_first: bool) -> Woke<T> {
    if udp_first {
        tokio::select! {
            biased;
            r = S::recv(udp, buf) => Woke::Udp(r),
            () = frames.ready() => Woke::Frames,
        }
    } else {
        tokio::select! {
            biased;
            () = frames.ready() => Woke::Frames,
            r = S::recv(udp, buf) => Woke::Udp(r),
        }
    }
}

struct ConnIo {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
}

fn spawn_conn<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    id: ConnId,
    s: T,
    tx: mpsc::Sender<Input<T>>,
) -> ConnIo {
    let (mut rd, mut wr) = tokio::io::split(s);
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
    ConnIo { writer: wtx, reader }
}

/// What the operating system said about a failed dial, as the core names it.
fn dial_failure(e: &io::Error) -> DialFailure {
    use nix::errno::Errno;
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ECONNREFUSED) => DialFailure::Refused,
        Some(Errno::ETIMEDOUT) => DialFailure::TimedOut,
        Some(Errno::EHOSTUNREACH | Errno::EHOSTDOWN) => DialFailure::HostUnreachable,
        Some(Errno::ENETUNREACH | Errno::ENETDOWN) => DialFailure::NetworkUnreachable,
        _ if e.kind() == io::ErrorKind::TimedOut => DialFailure::TimedOut,
        _ if e.kind() == io::ErrorKind::ConnectionRefused => DialFailure::Refused,
        _ => DialFailure::Other,
    }
}

/// Rate limits the log of connections going down, per remote address: the first time, when
/// the reason changes, and then at the 2nd, 4th, 8th… time in a row with the same reason. A
/// router retrying thousands of dead addresses logs a few lines for each, not one per try.
#[derive(Default)]
struct Quiet {
    seen: HashMap<SocketAddr, (String, u64)>,
}

impl Quiet {
    /// Most addresses remembered; beyond, the memory starts again.
    const MAX: usize = 4096;

    fn should_log(&mut self, remote: SocketAddr, reason: &impl std::fmt::Display) -> bool {
        let reason = reason.to_string();
        if self.seen.len() >= Self::MAX && !self.seen.contains_key(&remote) {
            self.seen.clear();
        }
        let e = self.seen.entry(remote).or_insert_with(|| (String::new(), 0));
        if e.0 != reason {
            *e = (reason, 1);
            return true;
        }
        e.1 += 1;
        e.1.is_power_of_two()
    }
}

/// Hands the router what one read returned: one datagram, or several coalesced ones of
/// `seg` bytes each (the last may be shorter). An empty datagram is handed over as such.
fn handle_received(router: &mut Router, now: Instant, from: SocketAddr, bytes: &[u8], seg: usize) {
    if bytes.is_empty() {
        return router.handle_datagram(now, from, bytes);
    }
    for d in bytes.chunks(seg.max(1)) {
        router.handle_datagram(now, from, d);
    }
}

/// Hands the router the frames waiting on `frames`, up to a batch; returns how many.
fn take_frames(router: &mut Router, frames: &mut impl Frames, t: Instant) -> usize {
    let offloaded = frames.offloaded_mtu();
    for n in 0..BATCH {
        let Some(f) = frames.next() else { return n };
        // The largest IP packet the frame may go on as: what the path carries.
        let path = router.frame_limit(t, f).saturating_sub(ETHERNET_HEADER);
        match offloaded {
            // TCP segments are cut to what the path carries, as a NIC cuts them to its link;
            // anything else reaches the router whole, which answers it "too big" (or
            // fragments it).
            Some(link) => segment::complete_in_place(f, link.min(path), |s| router.handle_frame(t, s)),
            None if f.len() <= path.saturating_add(ETHERNET_HEADER) => router.handle_frame(t, f),
            None => segment::complete_in_place(f, path, |s| router.handle_frame(t, s)),
        }
    }
    BATCH
}

/// Hands the router a datagram just read and the rest of its burst, up to a batch: one
/// pass of the loop per burst, not per datagram.
fn take_datagrams<S: Stack>(
    router: &mut Router,
    udp: &S::Udp,
    buf: &mut [u8],
    first: (usize, SocketAddr, usize),
    t: Instant,
) {
    let (n, from, seg) = first;
    handle_received(router, t, from, &buf[..n], seg);
    for _ in 1..BATCH {
        let Ok((n, from, seg)) = S::try_recv(udp, buf) else { break };
        handle_received(router, t, from, &buf[..n], seg);
    }
}

/// Hands the router the path MTU reports waiting on the UDP socket.
fn take_path_mtu_reports<S: Stack>(udp: &S::Udp, router: &mut Router, now: Instant) {
    for (to, mtu) in S::path_mtu_reports(udp) {
        tracing::debug!(%to, mtu, "path MTU reported");
        router.handle_path_mtu(now, to, mtu);
    }
}

/// Runs `router` on `port` until `shutdown` completes or a command asks to stop. Frames
/// captured from the bridge come in on `frames`; frames for the bridge and datagrams go out
/// through the outlet that `outlet` makes from the bound UDP socket, a stage at a time (the
/// simplest outlet is [`crate::outlet::Inline`] with a function that injects frames); every
/// event the router reports is shown to `on_event` (after the loop's own handling of dials
/// and closes is decided, before it is carried out).
pub async fn run<S: Stack, O: Outlet<S>>(
    mut router: Router,
    port: u16,
    mut frames: impl Frames,
    outlet: impl FnOnce(Arc<S::Udp>) -> io::Result<O>,
    mut on_event: impl FnMut(&Router, &Event),
    mut commands: mpsc::Receiver<Command>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<Router> {
    let any = |p| SocketAddr::from(([0, 0, 0, 0], p));
    let udp = Arc::new(S::bind_udp(any(port)).await?);
    let mut outlet = outlet(udp.clone())?;
    let listener = S::listen(any(port)).await?;
    let epoch = tokio::time::Instant::now();
    let now = move || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let (tx, mut rx) = mpsc::channel::<Input<S::Stream>>(4096);
    let accept_tx = tx.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            match S::accept(&listener).await {
                Ok((s, a)) => {
                    if accept_tx.send(Input::Accepted(s, a)).await.is_err() {
                        break;
                    }
                    // A flood of connection attempts cannot starve the router.
                    tokio::time::sleep(std::time::Duration::from_secs(1) / ACCEPTS_PER_SECOND).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    let mut conns: HashMap<ConnId, ConnIo> = HashMap::new();
    let mut udp_buf = vec![0u8; 65_536];
    let mut staged = Stage::default();
    tokio::pin!(shutdown);
    let mut udp_first = true;
    let mut send_errors = false;
    let mut quiet = Quiet::default();
    loop {
        let deadline = router.poll_timeout().map(|t| epoch + std::time::Duration::from_micros(t.as_micros()));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        // Branches are tried in a fixed order (not at random, as `select!` would), so a run
        // under a simulated network replays exactly. Timers come first (one pass handles all
        // that are due, so they cannot starve the rest, and a burst of input cannot delay a
        // heartbeat); the two data sources take turns coming first.
        let woke = tokio::select! {
            biased;
            () = &mut shutdown => Woke::Shutdown,
            () = sleep => Woke::Timer,
            Some(cmd) = commands.recv() => Woke::Command(cmd),
            Some(input) = rx.recv() => Woke::Input(input),
            w = next_data::<S, _>(&udp, &mut udp_buf, &mut frames, udp_first) => w,
        };
        udp_first = !udp_first;
        match woke {
            Woke::Udp(r) => match r {
                Ok(first) => take_datagrams::<S>(&mut router, &udp, &mut udp_buf, first, now()),
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    take_path_mtu_reports::<S>(&udp, &mut router, now());
                }
            },
            Woke::Frames => {
                take_frames(&mut router, &mut frames, now());
            }
            Woke::Input(input) => match input {
                Input::Accepted(s, a) => {
                    let id = router.accept(now(), a);
                    conns.insert(id, spawn_conn(id, s, tx.clone()));
                }
                Input::Dialled(id, Ok(s)) => {
                    conns.insert(id, spawn_conn(id, s, tx.clone()));
                    router.handle_conn_event(now(), id, ConnEvent::Connected);
                }
                Input::Dialled(id, Err(e)) => {
                    router.handle_conn_event(now(), id, ConnEvent::DialFailed(dial_failure(&e)));
                }
                Input::Bytes(id, b) => router.handle_stream(now(), id, &b),
                Input::Closed(id) => {
                    conns.remove(&id);
                    router.handle_conn_event(now(), id, ConnEvent::Closed);
                }
            },
            Woke::Command(cmd) => {
                if cmd(&mut router, now()) {
                    break;
                }
            }
            Woke::Timer => {
                // Reports are also taken here: one the send path met first leaves no wake-up.
                take_path_mtu_reports::<S>(&udp, &mut router, now());
                router.handle_timeout(now());
            }
            Woke::Shutdown => break,
        }
        loop {
            if staged.full() && !outlet.put(&udp, &mut staged, true) {
                send_errors = true;
            }
            let Some(t) = router.poll_transmit(staged.room()) else { break };
            match t.dest {
                Destination::Bridge => staged.push_frame(t.len),
                Destination::Udp(to) => staged.push_datagram(t.len, to),
                Destination::Conn(id) => {
                    if let Some(c) = conns.get(&id) {
                        let _ = c.writer.send(staged.room()[..t.len].to_vec());
                    }
                }
            }
        }
        let sent = staged.is_empty() || outlet.put(&udp, &mut staged, false);
        if !sent || std::mem::take(&mut send_errors) {
            take_path_mtu_reports::<S>(&udp, &mut router, now());
        }
        while let Some(e) = router.poll_event() {
            on_event(&router, &e);
            match e {
                Event::Dial { conn, addr } => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(std::time::Duration::from_secs(5), S::connect(addr))
                            .await
                            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")));
                        let _ = tx.send(Input::Dialled(conn, r)).await;
                    });
                }
                Event::Close { conn } => {
                    if let Some(c) = conns.remove(&conn) {
                        // Dropping the writer flushes what is queued, then closes.
                        c.reader.abort();
                    }
                }
                Event::ConnectionDown { remote, peer, reason, .. } if quiet.should_log(remote, &reason) => match peer {
                    Some(p) => tracing::info!(%remote, peer = %p, %reason, "connection down"),
                    None => tracing::info!(%remote, %reason, "connection down"),
                },
                Event::LinkEstablished { peer } => tracing::info!(%peer, "link established"),
                Event::LinkLost { peer, reason } => tracing::info!(%peer, %reason, "link lost"),
                _ => {}
            }
        }
    }
    acceptor.abort();
    for (_, c) in conns {
        c.reader.abort();
    }
    Ok(router)
}

#[cfg(test)]
mod tests {
    use router_core::{Config, DropReason, PeerName};

    use super::*;

    #[test]
    fn a_coalesced_read_is_handed_over_datagram_by_datagram() {
        let mut r = Router::new(Instant::ZERO, Config::new(PeerName::from_u64(1))).unwrap();
        let from: SocketAddr = "10.0.0.2:6783".parse().unwrap();
        // Three datagrams of 20 bytes and a last one of 7, read as one (UDP GRO): none is
        // valid, each is dropped and counted on its own.
        handle_received(&mut r, Instant::ZERO, from, &[0u8; 67], 20);
        assert_eq!(r.stats().datagrams_received, 4);
        assert_eq!(r.stats().drops.get(DropReason::Malformed), 4);
        handle_received(&mut r, Instant::ZERO, from, &[], 0);
        assert_eq!(r.stats().datagrams_received, 5, "an empty datagram is one datagram");
    }

    #[test]
    fn a_dead_target_is_logged_a_few_times_not_at_every_try() {
        let mut q = Quiet::default();
        let a: SocketAddr = "10.0.0.9:6783".parse().unwrap();
        let logged = (0..1000).filter(|_| q.should_log(a, &"dial failed: timed out")).count();
        assert_eq!(logged, 10, "the 1st, 2nd, 4th, … 512th");
        assert!(q.should_log(a, &"dial failed: connection refused"), "a new reason is logged at once");
        assert!(q.should_log("10.0.0.8:6783".parse().unwrap(), &"dial failed: timed out"), "per address");
    }

    #[test]
    fn dial_errors_are_named_as_the_os_names_them() {
        use nix::errno::Errno;
        let os = |e: Errno| io::Error::from_raw_os_error(e as i32);
        assert_eq!(dial_failure(&os(Errno::ECONNREFUSED)), DialFailure::Refused);
        assert_eq!(dial_failure(&os(Errno::EHOSTUNREACH)), DialFailure::HostUnreachable);
        assert_eq!(dial_failure(&os(Errno::ENETUNREACH)), DialFailure::NetworkUnreachable);
        assert_eq!(dial_failure(&io::Error::new(io::ErrorKind::TimedOut, "connect timed out")), DialFailure::TimedOut);
        assert_eq!(dial_failure(&os(Errno::EACCES)), DialFailure::Other);
    }
}
