//! The router's event loop, generic over its sockets: tokio's on Linux, turmoil's in tests.
//!
//! One task owns the core: it takes one input (a captured frame, a datagram, bytes or an event
//! on a control connection, a command, or the deadline), hands it to the core, drains every
//! output, and re-arms one timer from `poll_timeout`. Nothing runs while nothing happens.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use router_core::{ConnEvent, ConnId, Destination, Event, Instant, Router, TRANSMIT_BUF_MIN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
    /// Receives one datagram.
    fn recv_from<'a>(
        u: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a;
    /// Sends one datagram without waiting.
    fn try_send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
    /// Listens on TCP.
    fn listen(a: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Accepts one connection.
    fn accept(l: &Self::Listener) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + '_;
    /// Connects.
    fn connect(a: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// The operating system's sockets, through tokio.
pub struct Tokio;

impl Stack for Tokio {
    type Udp = tokio::net::UdpSocket;
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;
    async fn bind_udp(a: SocketAddr) -> io::Result<Self::Udp> {
        let u = tokio::net::UdpSocket::bind(a).await?;
        // Bursts of datagrams must not overflow the default ~200 KiB buffers: ask for 8 MiB
        // (beyond rmem_max/wmem_max when root, else as much as the limits allow).
        use nix::sys::socket::{setsockopt, sockopt};
        const BUF: usize = 8 << 20;
        if setsockopt(&u, sockopt::RcvBufForce, &BUF).is_err() {
            let _ = setsockopt(&u, sockopt::RcvBuf, &BUF);
        }
        if setsockopt(&u, sockopt::SndBufForce, &BUF).is_err() {
            let _ = setsockopt(&u, sockopt::SndBuf, &BUF);
        }
        Ok(u)
    }
    fn recv_from<'a>(
        u: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        u.recv_from(buf)
    }
    fn try_send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        u.try_send_to(buf, to)
    }
    fn listen(a: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        tokio::net::TcpListener::bind(a)
    }
    fn accept(l: &Self::Listener) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + '_ {
        l.accept()
    }
    async fn connect(a: SocketAddr) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect(a).await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

/// Something to do with the router from outside (the HTTP API); returns true to stop.
pub type Command = Box<dyn FnOnce(&mut Router, Instant) -> bool + Send>;

/// Most TCP connections accepted per second.
const ACCEPTS_PER_SECOND: u32 = 100;

enum Input<T> {
    Accepted(T, SocketAddr),
    Dialled(ConnId, io::Result<T>),
    Bytes(ConnId, Vec<u8>),
    Closed(ConnId),
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

/// Runs `router` on `port` until `shutdown` completes or a command asks to stop. Frames
/// captured from the bridge come in on `frames`; frames for the bridge go to `inject`.
pub async fn run<S: Stack>(
    mut router: Router,
    port: u16,
    mut frames: mpsc::Receiver<Vec<u8>>,
    mut inject: impl FnMut(&[u8]),
    mut commands: mpsc::Receiver<Command>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<Router> {
    let any = |p| SocketAddr::from(([0, 0, 0, 0], p));
    let udp = S::bind_udp(any(port)).await?;
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
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    let mut udp_buf = vec![0u8; 65_536];
    tokio::pin!(shutdown);
    loop {
        let deadline = router.poll_timeout().map(|t| epoch + std::time::Duration::from_micros(t.as_micros()));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = S::recv_from(&udp, &mut udp_buf) => match r {
                Ok((n, from)) => router.handle_datagram(now(), from, &udp_buf[..n]),
                Err(e) => tracing::debug!(error = %e, "UDP receive error"),
            },
            Some(f) = frames.recv() => router.handle_frame(now(), &f),
            Some(input) = rx.recv() => match input {
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
            Some(cmd) = commands.recv() => {
                if cmd(&mut router, now()) {
                    break;
                }
            }
            () = sleep => router.handle_timeout(now()),
            () = &mut shutdown => break,
        }
        while let Some(t) = router.poll_transmit(&mut buf) {
            let bytes = &buf[..t.len];
            match t.dest {
                Destination::Bridge => inject(bytes),
                Destination::Udp(to) => {
                    if let Err(e) = S::try_send_to(&udp, bytes, to) {
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
                Event::ConnectionDown { peer, reason, .. } => tracing::info!(?peer, %reason, "connection down"),
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
