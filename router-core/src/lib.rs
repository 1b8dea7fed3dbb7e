//! The sans-IO Weave router.
//!
//! One [`Router`] per host. It learns which peer each MAC lives behind, forwards Ethernet
//! frames to other routers in UDP datagrams (relaying when hosts are only partly connected),
//! and keeps a topology in agreement with its peers through gossip over TCP control
//! connections. It never touches a clock, a random source or a socket: drivers (`host-io`
//! on Linux, `sim` in a simulator) feed it inputs and carry out its outputs.
//!
//! ```
//! use router_core::{Config, Destination, Instant, PeerName, Router, TRANSMIT_BUF_MIN};
//!
//! let mut router = Router::new(Instant::ZERO, Config::new("02:00:00:00:00:01".parse().unwrap()))
//!     .expect("a valid configuration");
//! let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
//! let mut now = Instant::ZERO;
//! // The driver's loop: feed one input, drain every output, sleep until the next deadline.
//! router.handle_frame(now, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9, 0x08, 0x06]);
//! while let Some(t) = router.poll_transmit(&mut buf) {
//!     match t.dest {
//!         Destination::Bridge => { /* inject buf[..t.len] into the bridge */ }
//!         Destination::Conn(_conn) => { /* write buf[..t.len] to the TCP connection */ }
//!         Destination::Udp(_addr) => { /* send buf[..t.len] as one datagram */ }
//!     }
//! }
//! while let Some(_event) = router.poll_event() { /* dial, close, log */ }
//! if let Some(deadline) = router.poll_timeout() {
//!     now = deadline; // the driver sleeps until then, or until the next input
//!     router.handle_timeout(now);
//! }
//! ```
#![forbid(unsafe_code)]

mod addresses;
mod config;
mod conn;
pub mod crypto;
mod dedup;
mod discovery;
mod flood;
pub mod forward;
mod gossip;
mod handshake;
pub mod ipam;
mod lifecycle;
mod liveness;
mod mac_cache;
mod outbox;
mod peer;
mod pmtu;
mod router;
pub mod routes;
#[cfg(feature = "many-routers")]
pub mod share;
#[cfg(not(feature = "many-routers"))]
#[allow(unreachable_pub, dead_code)]
mod share;
mod sorted;
mod stats;
pub mod status;
pub mod table;
mod time;
mod timer;
mod toobig;
pub mod topology;
mod view;
pub mod wire;

pub use config::{Config, ConfigError};
pub use conn::{ConnError, LinkChange, LinkReason, Phase};
pub use crypto::{Password, PasswordError, Random, SeededRandom};
pub use forward::Decision;
pub use ipam::{Allocated, IpamConfig, IpamError, IpamState};
pub use mac_cache::MacOwner;
pub use outbox::{Destination, Transmit, TRANSMIT_BUF_MIN};
pub use peer::{ConnId, Mac, ParseNameError, PeerName, PeerUid};
pub use router::{CommandError, ConnEvent, DialFailure, Event, Router};
pub use stats::{DropReason, Drops, Stats};
pub use status::Status;
pub use time::Instant;
pub use wire::control::RefuseReason;

/// `core::time::Duration`, re-exported for convenience.
pub use core::time::Duration;
