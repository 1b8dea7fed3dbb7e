//! The daemon's side of the address allocator: its settings from the flags, its state file
//! (`ipam.json`), and the allocations the CLI waits for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use router_core::{Event, IpamConfig, IpamState, Router};
use tokio::sync::{mpsc, oneshot, watch};
use weave_host_io::eventloop::Command;

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
    c.write_ahead = true;
    c.reclaim_after = Some(args.ipalloc_reclaim_after).filter(|d| !d.is_zero());
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

/// Writes the allocator's state whenever it changes, newest first, off the event loop, and
/// holds back the answers that hand out an address until the state that records it is on
/// disk: a router that crashes never forgets an address a container was told it holds.
#[derive(Clone)]
pub(crate) struct Saver {
    tx: Arc<watch::Sender<Option<Generation>>>,
    /// Answers waiting for a generation to be written: (generation, reply, answer).
    parked: Arc<Mutex<Vec<Parked>>>,
}

/// A state to write: the router's generation, and the state's bytes.
type Generation = (u64, Vec<u8>);

/// An answer held until a generation is written: the generation, where to send, what.
type Parked = (u64, oneshot::Sender<Answer>, Answer);

impl Saver {
    /// Starts the writer for `dir`; it tells the router through `loop_tx` what it saved.
    pub(crate) fn start(dir: PathBuf, loop_tx: mpsc::Sender<Command>) -> Saver {
        let (tx, mut rx) = watch::channel::<Option<Generation>>(None);
        let parked: Arc<Mutex<Vec<Parked>>> = Arc::default();
        let waiting = parked.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some((gen, bytes)) = rx.borrow_and_update().clone() else { continue };
                let path = dir.join(FILE);
                let work = tokio::task::spawn_blocking(move || crate::state::write_atomic(&path, &bytes));
                let saved = work.await.map_err(|e| e.to_string()).and_then(|r| r);
                match &saved {
                    Err(e) => tracing::error!("address allocator state not saved: {e}"),
                    Ok(()) => {
                        // Hand-overs this state records may leave now.
                        let cmd: Command = Box::new(move |r, now| {
                            r.ipam_saved(now, gen);
                            false
                        });
                        let _ = loop_tx.send(cmd).await;
                    }
                }
                let ready: Vec<_> = match waiting.lock() {
                    Ok(mut p) => {
                        let (ready, later) = std::mem::take(&mut *p).into_iter().partition(|(g, _, _)| *g <= gen);
                        *p = later;
                        ready
                    }
                    Err(_) => Vec::new(),
                };
                for (_, reply, answer) in ready {
                    let answer = match &saved {
                        Ok(()) => answer,
                        Err(e) => {
                            Err(format!("the allocator's state could not be saved ({e}); nothing was handed out"))
                        }
                    };
                    let _ = reply.send(answer);
                }
            }
        });
        Saver { tx: Arc::new(tx), parked }
    }

    /// Saves `state`, the router's generation `gen`.
    fn save(&self, state: &IpamState, gen: u64) {
        match serde_json::to_vec(state) {
            Ok(b) => {
                let _ = self.tx.send(Some((gen, b)));
            }
            Err(e) => tracing::error!("address allocator state not serialised: {e}"),
        }
    }

    /// Sends `answer` once the router's current state (the change it has just made, which it
    /// reports as [`Event::IpamChanged`] in the same drain) is on disk.
    fn answer_after_save(&self, reply: oneshot::Sender<Answer>, answer: Answer, router: &Router) {
        let after = router.ipam_generation();
        match self.parked.lock() {
            Ok(mut p) => p.push((after, reply, answer)),
            Err(_) => {
                let _ = reply.send(Err("the allocator's state writer failed".into()));
            }
        }
    }
}

/// An allocation's answer: the address with its prefix, or why not.
pub(crate) type Answer = Result<String, String>;

/// The answers owed to CLI requests waiting for an address, by target and subnet.
type Waiting = BTreeMap<(String, Ipv4Net), Vec<oneshot::Sender<Answer>>>;

/// CLI requests waiting for an address.
#[derive(Clone)]
pub(crate) struct Waiters {
    waiting: Arc<Mutex<Waiting>>,
    saver: Saver,
}

impl Waiters {
    /// Waiters whose answers wait for `saver`.
    pub(crate) fn new(saver: Saver) -> Waiters {
        Waiters { waiting: Arc::default(), saver }
    }

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
        let held = ipam.lookup(target, key_subnet).is_some();
        match router.allocate(now, target, subnet) {
            Ok(Some(a)) if held => {
                let _ = reply.send(Ok(a.to_string()));
            }
            Ok(Some(a)) => self.saver.answer_after_save(reply, Ok(a.to_string()), router),
            Ok(None) => {
                if let Ok(mut w) = self.waiting.lock() {
                    w.entry((target.to_owned(), key_subnet)).or_default().push(reply);
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    /// Records an address the user chose; answers once that is on disk.
    pub(crate) fn claim(
        &self,
        router: &mut Router,
        now: router_core::Instant,
        target: &str,
        cidr: Ipv4Net,
        reply: oneshot::Sender<Answer>,
    ) {
        let held = router.ipam().and_then(|i| i.leases().get(&cidr.addr())).is_some_and(|l| l.target == target);
        match router.claim(now, target, cidr) {
            Ok(true) if !held => {
                self.saver.answer_after_save(reply, Ok(format!("{cidr} recorded for {target}")), router)
            }
            Ok(true) => {
                let _ = reply.send(Ok(format!("{cidr} recorded for {target}")));
            }
            Ok(false) => {
                let _ = reply.send(Ok(format!("{cidr} is outside the allocation range")));
            }
            // An address the user chose still works, as it always did; the allocator just
            // cannot promise it is unique.
            Err(router_core::IpamError::Disabled) => {
                let _ = reply.send(Ok(String::new()));
            }
            Err(e) => {
                let _ = reply.send(Ok(format!("warning: {e}")));
            }
        }
    }

    fn finish(&self, a: &router_core::Allocated, router: &Router) {
        let Ok(mut w) = self.waiting.lock() else { return };
        for reply in w.remove(&(a.target.clone(), a.subnet)).unwrap_or_default() {
            match &a.result {
                Ok(n) => self.saver.answer_after_save(reply, Ok(n.to_string()), router),
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// What the daemon does with the router's allocator events.
pub(crate) fn on_event(router: &Router, e: &Event, waiters: &Waiters) {
    match e {
        Event::Allocated(a) => {
            match &a.result {
                Ok(n) => tracing::info!(target = %a.target, address = %n, "address allocated"),
                Err(err) => tracing::warn!(target = %a.target, subnet = %a.subnet, "no address: {err}"),
            }
            waiters.finish(a, router);
        }
        Event::IpamChanged => {
            if let Some(s) = router.ipam_state() {
                waiters.saver.save(&s, router.ipam_generation());
            }
        }
        _ => {}
    }
}
