//! The daemon's side of the address allocator: its settings from the flags, its state file
//! (`ipam.json`), and the allocations the CLI waits for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use router_core::{Event, IpamConfig, IpamState, Router};
use tokio::sync::{oneshot, watch};

use crate::RouterArgs;

/// The state file in the state directory.
pub(crate) const FILE: &str = "ipam.json";

/// The allocator's settings from the flags: none when `--ipalloc-range ""` turns it off.
/// `peers` is how many peers were named at launch.
pub(crate) fn config(args: &RouterArgs, peers: usize) -> Result<Option<IpamConfig>, String> {
    if args.ipalloc_range.is_empty() {
        return Ok(None);
    }
    let cidr = |flag: &str, s: &str| -> Result<Ipv4Net, String> {
        s.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| format!("{flag} {s}: not a CIDR like 10.32.0.0/12"))
    };
    let range = cidr("--ipalloc-range", &args.ipalloc_range)?;
    let mut c = IpamConfig::new(range);
    if let Some(s) = &args.ipalloc_default_subnet {
        c.default_subnet = cidr("--ipalloc-default-subnet", s)?;
    }
    c.init_peers = args.ipalloc_init_peers.unwrap_or(peers + 1);
    c.validate().map_err(|e| format!("--ipalloc-range {}: {e}", args.ipalloc_range))?;
    Ok(Some(c))
}

/// The saved state, if any; a file that cannot be read or parsed is reported, never
/// replaced.
pub(crate) fn load(dir: &Path) -> Result<Option<IpamState>, String> {
    let path = dir.join(FILE);
    let Some(text) = crate::state::read(&path)? else { return Ok(None) };
    serde_json::from_str(&text).map(Some).map_err(|e| crate::state::corrupt(&path, e))
}

/// Writes the allocator's state whenever it changes, newest first, off the event loop.
#[derive(Clone)]
pub(crate) struct Saver {
    tx: Arc<watch::Sender<Option<Vec<u8>>>>,
}

impl Saver {
    /// Starts the writer for `dir`.
    pub(crate) fn start(dir: PathBuf) -> Saver {
        let (tx, mut rx) = watch::channel::<Option<Vec<u8>>>(None);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(bytes) = rx.borrow_and_update().clone() else { continue };
                let path = dir.join(FILE);
                let work = tokio::task::spawn_blocking(move || crate::state::write_atomic(&path, &bytes));
                match work.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("address allocator state not saved: {e}"),
                    Err(e) => tracing::error!("address allocator state not saved: {e}"),
                }
            }
        });
        Saver { tx: Arc::new(tx) }
    }

    fn save(&self, state: &IpamState) {
        match serde_json::to_vec(state) {
            Ok(b) => {
                let _ = self.tx.send(Some(b));
            }
            Err(e) => tracing::error!("address allocator state not serialised: {e}"),
        }
    }
}

/// An allocation's answer: the address with its prefix, or why not.
pub(crate) type Answer = Result<String, String>;

/// The answers owed to CLI requests waiting for an address, by target and subnet.
type Waiting = BTreeMap<(String, Ipv4Net), Vec<oneshot::Sender<Answer>>>;

/// CLI requests waiting for an address.
#[derive(Clone, Default)]
pub(crate) struct Waiters(Arc<Mutex<Waiting>>);

impl Waiters {
    /// Asks the router for an address for `target` in `subnet` (the default one when
    /// `None`); answers at once, or when the router's result comes.
    pub(crate) fn allocate(
        &self,
        router: &mut Router,
        now: router_core::Instant,
        target: &str,
        subnet: Option<Ipv4Net>,
        reply: oneshot::Sender<Answer>,
    ) {
        let Some(ipam) = router.ipam() else {
            let _ = reply.send(Err(router_core::IpamError::Disabled.to_string()));
            return;
        };
        let key_subnet = subnet.map_or(ipam.config().default_subnet, |s| s.trunc());
        match router.allocate(now, target, subnet) {
            Ok(Some(a)) => {
                let _ = reply.send(Ok(a.to_string()));
            }
            Ok(None) => {
                if let Ok(mut w) = self.0.lock() {
                    w.entry((target.to_owned(), key_subnet)).or_default().push(reply);
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    fn finish(&self, a: &router_core::Allocated) {
        let Ok(mut w) = self.0.lock() else { return };
        for reply in w.remove(&(a.target.clone(), a.subnet)).unwrap_or_default() {
            let _ = reply.send(a.result.clone().map(|n| n.to_string()).map_err(|e| e.to_string()));
        }
    }
}

/// What the daemon does with the router's allocator events.
pub(crate) fn on_event(router: &Router, e: &Event, waiters: &Waiters, saver: &Saver) {
    match e {
        Event::Allocated(a) => {
            match &a.result {
                Ok(n) => tracing::info!(target = %a.target, address = %n, "address allocated"),
                Err(err) => tracing::warn!(target = %a.target, subnet = %a.subnet, "no address: {err}"),
            }
            waiters.finish(a);
        }
        Event::IpamChanged => {
            if let Some(s) = router.ipam_state() {
                saver.save(&s);
            }
        }
        _ => {}
    }
}
