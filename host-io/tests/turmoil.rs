//! The production event loop (`weave_host_io::eventloop`) under turmoil: real async driver,
//! simulated network, seeded and reproducible. Three routers in a full mesh; frames go in
//! through each host's "bridge" channel and come out of the others'.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use router_core::{Config, Instant, PeerName, Router};
use tokio::sync::mpsc;
use weave_host_io::eventloop::{self, Command, Stack};
use weave_host_io::outlet::Inline;

struct Turmoil;

impl Stack for Turmoil {
    type Udp = turmoil::net::UdpSocket;
    type Listener = turmoil::net::TcpListener;
    type Stream = turmoil::net::TcpStream;
    fn bind_udp(a: SocketAddr) -> impl Future<Output = io::Result<Self::Udp>> + Send {
        turmoil::net::UdpSocket::bind(a)
    }
    async fn recv(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        let (n, from) = u.recv_from(buf).await?;
        Ok((n, from, n.max(1)))
    }
    fn try_recv(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        let (n, from) = u.try_recv_from(buf)?;
        Ok((n, from, n.max(1)))
    }
    fn try_send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        u.try_send_to(buf, to)
    }
    fn listen(a: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        turmoil::net::TcpListener::bind(a)
    }
    fn accept(l: &Self::Listener) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + '_ {
        l.accept()
    }
    fn connect(a: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        turmoil::net::TcpStream::connect(a)
    }
}

const HOSTS: usize = 3;

/// Per host, the (virtual millisecond, frame tag) of every frame it injected into its bridge.
type Deliveries = Vec<Vec<(u128, u8)>>;

fn frame(src: u8, tag: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, src]);
    f.extend_from_slice(&[0x08, 0x00, tag, tag, tag, tag]);
    f
}

/// Runs the scenario; returns what each host injected, and when.
fn scenario(seed: u64, password: Option<&str>) -> Deliveries {
    let password = password.map(|p| router_core::Password::new(p).expect("non-empty"));
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .build_with_rng(Box::new(ChaCha8Rng::seed_from_u64(seed)));
    let injected: Rc<RefCell<Deliveries>> = Rc::new(RefCell::new(vec![Vec::new(); HOSTS]));
    let mut frame_txs = Vec::new();
    for i in 0..HOSTS {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
        frame_txs.push(tx);
        let rx = Rc::new(RefCell::new(Some(rx)));
        let injected = injected.clone();
        let password = password.clone();
        sim.host(format!("h{i}"), move || {
            let password = password.clone();
            let rx = rx.borrow_mut().take().expect("hosts are not restarted here");
            let injected = injected.clone();
            async move {
                let mut cfg = Config::new(PeerName::from_u64(i as u64 + 1));
                cfg.seed = seed ^ i as u64;
                cfg.discovery = false;
                cfg.backoff_max = Duration::from_secs(2);
                cfg.udp_timeout = Duration::from_secs(2);
                cfg.password = password;
                let mut router = Router::seeded(Instant::ZERO, cfg).expect("a valid configuration");
                for j in 0..i {
                    let addr = SocketAddr::new(turmoil::lookup(format!("h{j}")), 6783);
                    router.connect(Instant::ZERO, addr).unwrap();
                }
                let (_cmd_tx, cmd_rx) = mpsc::channel::<Command>(1);
                let t0 = tokio::time::Instant::now();
                let inject = move |fs: &[&[u8]]| {
                    for f in fs {
                        injected.borrow_mut()[i].push((t0.elapsed().as_millis(), f[14]));
                    }
                };
                eventloop::run::<Turmoil, _>(
                    router,
                    6783,
                    eventloop::ChannelFrames::new(rx),
                    |_| Ok(Inline(inject)),
                    |_, _| {},
                    cmd_rx,
                    std::future::pending(),
                )
                .await?;
                Ok(())
            }
        });
    }
    sim.client("driver", async move {
        let send = |h: usize, tag: u8| frame_txs[h].try_send(frame(h as u8 + 1, tag)).expect("room");
        tokio::time::sleep(Duration::from_secs(5)).await;
        send(0, 1); // everyone hears h0
        tokio::time::sleep(Duration::from_secs(1)).await;
        turmoil::partition("h0", "h1");
        tokio::time::sleep(Duration::from_secs(5)).await;
        send(0, 2); // h1 hears it through h2
        tokio::time::sleep(Duration::from_secs(1)).await;
        turmoil::repair("h0", "h1");
        tokio::time::sleep(Duration::from_secs(5)).await;
        send(1, 3); // and the repaired link works again
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    let v = injected.borrow().clone();
    v
}

#[test]
fn three_routers_under_turmoil_survive_a_partition_and_repair_reproducibly() {
    check(None);
}

/// The same through the production event loop with sealed control records and datagrams.
#[test]
fn encrypted_routers_under_turmoil_survive_a_partition_and_repair_reproducibly() {
    check(Some("turmoil"));
}

fn check(password: Option<&str>) {
    let a = scenario(7, password);
    let tags = |h: usize| a[h].iter().map(|(_, t)| *t).collect::<Vec<_>>();
    assert_eq!(tags(1), vec![1, 2], "h1 hears h0 before, and through h2 during, the partition");
    assert_eq!(tags(2), vec![1, 2, 3]);
    assert_eq!(tags(0), vec![3], "h0 hears h1 after the repair");
    let b = scenario(7, password);
    assert_eq!(a, b, "the same seed gives the same deliveries at the same virtual times");
}
