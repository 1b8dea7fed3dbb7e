//! Where the event loop's outputs go out: written by the loop itself ([`Inline`]), or by a
//! second thread while the loop reads and forwards what comes next ([`Writer`]).
//!
//! The loop stages the router's outputs (frames for the bridge, datagrams) in a [`Stage`] and
//! hands each stage to its outlet when it is full or when a pass of the loop ends. Writing a
//! stage is most of a router's work: the system calls that inject into the bridge run the
//! receiving container's stack, and those that send run the underlay's. A writer thread takes that
//! work to another core. The thread never holds a frame back: a stage handed over goes out as soon as
//! the thread is free, and a small stage at the end of a pass, with the thread idle, is
//! written by the loop at once, so a lone frame (a ping) pays no hand-over. Stages go out in
//! the order they were staged, whichever thread writes them, so every flow keeps its order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use router_core::TRANSMIT_BUF_MIN;

use crate::eventloop::Stack;

/// Most outputs to one destination in a stage. A pass's frames for the bridge are coalesced
/// within one stage, so it holds several full super-frames' worth of segments (a 64 KiB
/// super-frame takes some 45): a smaller stage would end each flow's run, and cut a
/// super-frame short, at every stage.
pub const STAGE: usize = 256;

/// Outputs waiting to go out together: the router writes each straight into one buffer, and
/// the frames for the bridge and the datagrams refer to their place in it.
#[derive(Debug)]
pub struct Stage {
    buf: Vec<u8>,
    used: usize,
    /// Frames for the bridge: (offset, length).
    bridge: Vec<(usize, usize)>,
    /// Datagrams: (offset, length, address).
    udp: Vec<(usize, usize, SocketAddr)>,
}

impl Default for Stage {
    fn default() -> Self {
        Stage {
            buf: vec![0; STAGE * 2048 + TRANSMIT_BUF_MIN],
            used: 0,
            bridge: Vec::with_capacity(STAGE),
            udp: Vec::with_capacity(STAGE),
        }
    }
}

impl Stage {
    /// Room for the router's next output.
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.used..]
    }

    /// Takes the output just written at the start of [`Stage::room`], `len` bytes, as a frame
    /// for the bridge.
    pub fn push_frame(&mut self, len: usize) {
        self.bridge.push((self.used, len));
        self.used += len;
    }

    /// As [`Stage::push_frame`], for a datagram to `to`.
    pub fn push_datagram(&mut self, len: usize, to: SocketAddr) {
        self.udp.push((self.used, len, to));
        self.used += len;
    }

    /// No room for another output.
    pub fn full(&self) -> bool {
        self.buf.len() - self.used < TRANSMIT_BUF_MIN || self.bridge.len() == STAGE || self.udp.len() == STAGE
    }

    /// Outputs staged.
    pub fn len(&self) -> usize {
        self.bridge.len() + self.udp.len()
    }

    /// Nothing staged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Injects the frames, then sends the datagrams, and empties the stage. Frames go first:
    /// a datagram staged with them is most often the answer a watch asked for, which can wait
    /// the few microseconds a container's frame should not. Returns false when some datagrams
    /// did not go out (a full buffer, or an error the socket reports: see
    /// [`Stack::path_mtu_reports`]).
    fn write<S: Stack>(&mut self, udp: &S::Udp, inject: &mut impl FnMut(&[&[u8]])) -> bool {
        let buf = &self.buf;
        if !self.bridge.is_empty() {
            let frames: Vec<&[u8]> = self.bridge.iter().map(|&(o, n)| &buf[o..o + n]).collect();
            inject(&frames);
            self.bridge.clear();
        }
        let mut all = true;
        if !self.udp.is_empty() {
            let list: Vec<(&[u8], SocketAddr)> = self.udp.iter().map(|&(o, n, to)| (&buf[o..o + n], to)).collect();
            let sent = S::send_batch(udp, &list);
            if sent < list.len() {
                tracing::debug!(
                    dropped = list.len() - sent,
                    "UDP send buffer full or an error reported; datagrams dropped"
                );
            }
            all = sent == list.len();
            self.udp.clear();
        }
        self.used = 0;
        all
    }
}

/// Where stages go out.
pub trait Outlet<S: Stack> {
    /// Writes `stage`, or hands it over to be written, and leaves `stage` empty to fill next.
    /// `more`: the loop has more outputs to stage in this pass. Returns false when some
    /// datagrams are known not to have gone out, of this stage or of one written earlier (a
    /// full buffer, or an error the socket reports: see [`Stack::path_mtu_reports`]).
    fn put(&mut self, udp: &Arc<S::Udp>, stage: &mut Stage, more: bool) -> bool;
}

/// The loop writes every stage itself.
pub struct Inline<F>(pub F);

impl<S: Stack, F: FnMut(&[&[u8]])> Outlet<S> for Inline<F> {
    fn put(&mut self, udp: &Arc<S::Udp>, stage: &mut Stage, _more: bool) -> bool {
        stage.write::<S>(udp, &mut self.0)
    }
}

/// Stages of at most this many outputs, at the end of a pass while the thread is idle, are
/// written by the loop: waking the thread would cost more than the writing.
const INLINE_MAX: usize = 8;

/// Most stages out at once: handed to the thread and not yet given back. The loop waits for
/// one to come back beyond that (the thread is behind; waiting slows the reading of more).
const STAGES_OUT: usize = 4;

/// Writes stages: on a thread of its own, in order, when it has one; at once otherwise.
pub struct Writer<F> {
    inject: Arc<Mutex<F>>,
    /// The thread's queue; none without a thread (or once it has stopped).
    to_thread: Option<SyncSender<Stage>>,
    back: Receiver<Stage>,
    /// Stages handed over and not yet given back.
    out: usize,
    /// Stages given back, to be filled again: a stage is allocated once, not per hand-over.
    spares: Vec<Stage>,
    /// Some datagrams of a stage the thread wrote did not go out.
    send_errors: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<F: FnMut(&[&[u8]]) + Send + 'static> Writer<F> {
    /// Writes frames with `inject` and datagrams on `udp`, on a thread of its own if
    /// `threaded`.
    pub fn new<S: Stack>(inject: F, udp: Arc<S::Udp>, threaded: bool) -> std::io::Result<Self> {
        let inject = Arc::new(Mutex::new(inject));
        let (to_thread, from_loop) = mpsc::sync_channel::<Stage>(STAGES_OUT);
        let (to_loop, back) = mpsc::sync_channel::<Stage>(STAGES_OUT);
        let send_errors = Arc::new(AtomicBool::new(false));
        let (inj, errors) = (inject.clone(), send_errors.clone());
        let thread = threaded
            .then(|| {
                std::thread::Builder::new().name("weave-out".into()).spawn(move || {
                    while let Ok(mut stage) = from_loop.recv() {
                        let mut inject = inj.lock().unwrap_or_else(|e| e.into_inner());
                        if !stage.write::<S>(&udp, &mut *inject) {
                            errors.store(true, Ordering::Relaxed);
                        }
                        drop(inject);
                        if to_loop.send(stage).is_err() {
                            break;
                        }
                    }
                })
            })
            .transpose()?;
        let to_thread = thread.is_some().then_some(to_thread);
        Ok(Writer { inject, to_thread, back, out: 0, spares: Vec::new(), send_errors, thread })
    }
}

impl<F> Writer<F> {
    /// A stage given back, waiting for one if `wait`.
    fn take_back(&mut self, wait: bool) -> Option<Stage> {
        let s = if wait { self.back.recv().ok() } else { self.back.try_recv().ok() };
        if s.is_some() {
            self.out -= 1;
        }
        s
    }
}

impl<S: Stack, F: FnMut(&[&[u8]]) + Send + 'static> Outlet<S> for Writer<F> {
    fn put(&mut self, udp: &Arc<S::Udp>, stage: &mut Stage, more: bool) -> bool {
        // Given back: the thread has written them all.
        while let Some(s) = self.take_back(false) {
            self.spares.push(s);
        }
        let all = !self.send_errors.swap(false, Ordering::Relaxed);
        let hand_over = self.out > 0 || more || stage.len() > INLINE_MAX;
        if self.to_thread.is_none() || !hand_over {
            let mut inject = self.inject.lock().unwrap_or_else(|e| e.into_inner());
            return stage.write::<S>(udp, &mut *inject) && all;
        }
        let next = match self.spares.pop() {
            Some(s) => s,
            None if self.out < STAGES_OUT => Stage::default(),
            None => self.take_back(true).unwrap_or_default(),
        };
        let full = std::mem::replace(stage, next);
        let refused = match &self.to_thread {
            Some(t) => t.send(full).err().map(|e| e.0),
            None => Some(full),
        };
        let Some(mut full) = refused else {
            self.out += 1;
            return all;
        };
        tracing::error!("the output thread stopped; the event loop writes its own outputs");
        self.to_thread = None;
        let mut inject = self.inject.lock().unwrap_or_else(|e| e.into_inner());
        full.write::<S>(udp, &mut *inject) && all
    }
}

impl<F> Drop for Writer<F> {
    /// Lets the thread write what it was handed, then stops it.
    fn drop(&mut self) {
        self.to_thread = None;
        while self.out > 0 && self.take_back(true).is_some() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stack::Tokio;

    /// Frame or datagram number `n`: its number four times over.
    fn tagged(n: u32) -> Vec<u8> {
        n.to_be_bytes().repeat(4)
    }

    fn tag(b: &[u8]) -> u32 {
        u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
    }

    fn stage_frame(stage: &mut Stage, n: u32) {
        let f = tagged(n);
        stage.room()[..f.len()].copy_from_slice(&f);
        stage.push_frame(f.len());
    }

    /// Frames injected, by tag, with the name of the thread that injected each.
    type Injected = Arc<Mutex<Vec<(u32, String)>>>;

    /// An injector that records what it injects and now and then takes a millisecond, so that
    /// stages queue up behind it.
    fn recorder(injected: &Injected) -> impl FnMut(&[&[u8]]) + Send + 'static {
        let (got, mut calls) = (injected.clone(), 0u32);
        move |fs: &[&[u8]]| {
            calls += 1;
            if calls % 16 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let me = std::thread::current().name().unwrap_or("").to_string();
            got.lock().unwrap().extend(fs.iter().map(|f| (tag(f), me.clone())));
        }
    }

    /// Runs `f` with a UDP socket of the loop's kind on loopback, once tokio knows it writable.
    fn with_udp(f: impl FnOnce(Arc<std::net::UdpSocket>, Arc<tokio::net::UdpSocket>)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let udp = Arc::new(Tokio::bind_udp("127.0.0.1:0".parse().unwrap()).await.expect("bind"));
            let sink = Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the sink"));
            udp.writable().await.expect("writable");
            f(sink, udp);
        });
    }

    #[test]
    fn stages_go_out_in_the_order_staged_whichever_thread_writes_them() {
        with_udp(|sink, udp| {
            let to = sink.local_addr().unwrap();
            let reader = std::thread::spawn(move || {
                sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut b = [0u8; 64];
                let mut got = Vec::new();
                while let Ok(n) = sink.recv(&mut b) {
                    got.push(tag(&b[..n]));
                    if got.last() == Some(&u32::MAX) {
                        break;
                    }
                }
                got
            });
            let injected = Injected::default();
            let mut w = Writer::new::<Tokio>(recorder(&injected), udp.clone(), true).expect("a thread");
            let mut stage = Stage::default();
            let (mut frames, mut datagrams) = (0u32, Vec::new());
            let mut buffers = std::collections::HashSet::new();
            for pass in 0u32..3000 {
                buffers.insert(stage.room().as_ptr());
                // Stages of 1 to 40 frames, some ending a pass and some not; every 7th pass
                // also sends a datagram.
                for _ in 0..(pass * 7919 % 40 + 1) {
                    stage_frame(&mut stage, frames);
                    frames += 1;
                }
                if pass % 7 == 0 {
                    let d = tagged(pass);
                    stage.room()[..d.len()].copy_from_slice(&d);
                    stage.push_datagram(d.len(), to);
                    datagrams.push(pass);
                }
                assert!(Outlet::<Tokio>::put(&mut w, &udp, &mut stage, pass % 5 == 0));
                assert!(stage.is_empty(), "the loop always gets an empty stage back");
            }
            drop(w);
            assert!(buffers.len() <= STAGES_OUT + 1, "stages are reused: {} buffers", buffers.len());
            let d = tagged(u32::MAX);
            Tokio::try_send_to(&udp, &d, to).expect("the end mark goes out");
            let injected = injected.lock().unwrap();
            let order: Vec<u32> = injected.iter().map(|(n, _)| *n).collect();
            assert_eq!(order, (0..frames).collect::<Vec<_>>(), "every frame once, in order");
            assert!(injected.iter().any(|(_, t)| t == "weave-out"), "stages were handed over");
            assert!(injected.iter().any(|(_, t)| t != "weave-out"), "small stages were written at once");
            datagrams.push(u32::MAX);
            assert_eq!(reader.join().unwrap(), datagrams, "every datagram once, in order");
        });
    }

    #[test]
    fn a_lone_frame_is_written_by_the_loop_while_the_thread_is_idle() {
        with_udp(|_, udp| {
            let injected = Injected::default();
            let mut w = Writer::new::<Tokio>(recorder(&injected), udp.clone(), true).expect("a thread");
            let mut stage = Stage::default();
            stage_frame(&mut stage, 1);
            assert!(Outlet::<Tokio>::put(&mut w, &udp, &mut stage, false));
            let me = std::thread::current().name().unwrap_or("").to_string();
            assert_eq!(*injected.lock().unwrap(), vec![(1, me)], "written before put returned, here");
            // A stage the pass goes on after is handed over, and written before the writer stops.
            stage_frame(&mut stage, 2);
            assert!(Outlet::<Tokio>::put(&mut w, &udp, &mut stage, true));
            drop(w);
            assert_eq!(injected.lock().unwrap()[1], (2, "weave-out".to_string()));
        });
    }

    #[test]
    fn without_a_thread_every_stage_is_written_at_once() {
        with_udp(|_, udp| {
            let injected = Injected::default();
            let mut w = Writer::new::<Tokio>(recorder(&injected), udp.clone(), false).expect("no thread");
            let mut stage = Stage::default();
            for n in 0..STAGE as u32 {
                stage_frame(&mut stage, n);
            }
            assert!(stage.full());
            assert!(Outlet::<Tokio>::put(&mut w, &udp, &mut stage, true));
            assert_eq!(injected.lock().unwrap().len(), STAGE);
        });
    }
}
