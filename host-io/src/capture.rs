//! Capture and injection on the router's bridge port: with packet sockets that carry
//! offload metadata (`packet`, preferred), or with pcap.
//!
//! With pcap, the event loop reads frames arriving at the port (promiscuous, immediate mode, inbound
//! only, so frames we inject are not read back) from a non-blocking handle; injection writes
//! on a second handle.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pcap::{Active, Capture, Direction};
use tokio::io::unix::AsyncFd;
use weave_host_io::eventloop::Frames;

use crate::packet::{PacketCapture, PacketInjector};

/// How frames leave and enter the bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CaptureMode {
    /// Packet sockets where the kernel has what they need, pcap otherwise.
    Auto,
    /// `AF_PACKET` sockets with virtio-net headers: 64 KiB super-frames both ways.
    Packet,
    /// pcap: frames of up to the MTU are injected.
    Pcap,
}

/// What the data path counts at the bridge port; the metrics show it.
#[derive(Debug, Default)]
pub(crate) struct BridgeCounters {
    /// Super-frames injected, each joining several of a flow's TCP segments.
    pub(crate) superframes: AtomicU64,
    /// Segments that went into them.
    pub(crate) segments_joined: AtomicU64,
    /// Frames the port refused to take.
    pub(crate) inject_failed: AtomicU64,
    /// Frames that could not be read (too large, too short, a read error).
    pub(crate) capture_failed: AtomicU64,
}

impl BridgeCounters {
    /// Each counter by the name the metrics give it.
    pub(crate) fn snapshot(&self) -> [(&'static str, u64); 4] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("superframe_injected", get(&self.superframes)),
            ("segment_joined", get(&self.segments_joined)),
            ("inject_failed", get(&self.inject_failed)),
            ("capture_failed", get(&self.capture_failed)),
        ]
    }
}

/// Adds `n` to a failure counter and logs the 1st, 2nd, 4th, 8th… failure with `what`.
pub(crate) fn failed(c: &AtomicU64, n: u64, what: &str, why: &dyn std::fmt::Display) {
    let before = c.fetch_add(n, Ordering::Relaxed);
    if before.leading_zeros() != (before + n).leading_zeros() {
        tracing::warn!(error = %why, count = before + n, "{what}");
    }
}

/// Frames captured on the bridge port, by either backend.
pub(crate) enum Captured {
    Packet(PacketCapture),
    Pcap(PcapCapture),
}

impl Frames for Captured {
    async fn ready(&mut self) {
        match self {
            Captured::Packet(c) => c.ready().await,
            Captured::Pcap(c) => c.ready().await,
        }
    }
    fn next(&mut self) -> Option<&mut [u8]> {
        match self {
            Captured::Packet(c) => c.next(),
            Captured::Pcap(c) => c.next(),
        }
    }
    fn offloaded_mtu(&self) -> Option<usize> {
        match self {
            Captured::Packet(c) => c.offloaded_mtu(),
            Captured::Pcap(c) => c.offloaded_mtu(),
        }
    }
}

/// Writes frames into the bridge, by either backend.
pub(crate) enum Injector {
    Packet(PacketInjector),
    Pcap(PcapInjector),
}

impl Injector {
    /// Injects a batch of frames; failures are logged and counted.
    pub(crate) fn inject(&mut self, frames: &[&[u8]]) {
        match self {
            Injector::Packet(i) => i.inject(frames),
            Injector::Pcap(i) => i.inject(frames),
        }
    }
}

/// Opens capture and injection on `dev` as `mode` asks (`auto`: packet sockets, or pcap
/// when they cannot be opened, saying why); must run inside the tokio runtime that will read
/// the frames. Returns them and a description of the data path for `weave status`.
pub(crate) fn open_port(
    dev: &str,
    mtu: u32,
    mode: CaptureMode,
    counters: &Arc<BridgeCounters>,
) -> Result<(Captured, Injector, String), String> {
    let packet = "packet sockets with virtio-net headers (64 KiB super-frames both ways)";
    let pcap = "pcap (frames up to the MTU injected)";
    if mode != CaptureMode::Pcap {
        match crate::packet::open_port(dev, mtu, counters.clone()) {
            Ok((c, i)) => return Ok((Captured::Packet(c), Injector::Packet(i), packet.to_string())),
            Err(e) if mode == CaptureMode::Packet => {
                return Err(format!("packet sockets on {dev}: {e} (try --capture pcap)"));
            }
            Err(e) => tracing::warn!(error = %e, port = dev, "packet sockets unavailable; capturing with pcap"),
        }
    }
    let (c, i) = open_pcap(dev, mtu, counters.clone()).map_err(|e| format!("pcap on {dev}: {e}"))?;
    Ok((Captured::Pcap(c), Injector::Pcap(i), pcap.to_string()))
}

/// Writes frames into the bridge with pcap.
pub(crate) struct PcapInjector {
    cap: Capture<Active>,
    counters: Arc<BridgeCounters>,
}

impl PcapInjector {
    /// Injects frames, several with one system call; failures are logged and counted.
    pub(crate) fn inject(&mut self, frames: &[&[u8]]) {
        use std::io::IoSlice;

        use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
        if let [one] = frames {
            if let Err(e) = self.cap.sendpacket(*one) {
                self.failed(1, &e.to_string());
            }
            return;
        }
        // The capture handle's socket is bound to the port: no address per message.
        let iovs: Vec<[IoSlice<'_>; 1]> = frames.iter().map(|f| [IoSlice::new(f)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = vec![None; frames.len()];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(frames.len(), None);
        let none: [ControlMessage<'_>; 0] = [];
        let sent = match sendmmsg(self.cap.as_raw_fd(), &mut headers, &iovs, addrs, none, MsgFlags::empty()) {
            Ok(r) => r.count(),
            Err(e) => {
                self.failed(frames.len() as u64, &e.to_string());
                return;
            }
        };
        if sent < frames.len() {
            self.failed((frames.len() - sent) as u64, "partial batch");
        }
    }

    fn failed(&mut self, n: u64, why: &str) {
        failed(&self.counters.inject_failed, n, "injecting into the bridge failed", &why);
    }
}

fn open(dev: &str) -> Result<Capture<Active>, pcap::Error> {
    // Room for a whole 64 KiB segment from a container that offloads segmentation to us.
    Capture::from_device(dev)?.promisc(true).immediate_mode(true).snaplen(70_000).buffer_size(8 << 20).timeout(0).open()
}

/// Waits until the capture descriptor may have a frame. After a read found none
/// (`drained`), readiness is cleared first, then the loop looks once more: a frame that
/// arrived between the empty read and the clear would otherwise wait for the next one.
pub(crate) async fn readable<T: AsRawFd>(fd: &mut AsyncFd<T>, drained: &mut bool) {
    let mut g = match fd.readable_mut().await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "capture port unusable; no more frames will be captured");
            return std::future::pending().await;
        }
    };
    if std::mem::take(drained) {
        g.clear_ready();
    }
}

/// Frames captured on the bridge port, read by the event loop itself: the capture handle is
/// non-blocking and its descriptor sits in tokio's reactor, so a frame costs no thread
/// hand-off, no wakeup of another thread and no allocation; one copy, out of pcap's read-only
/// ring. Frames come as the containers' stacks left them (see `segment`).
pub(crate) struct PcapCapture {
    fd: AsyncFd<Handle>,
    /// The bridge's MTU: the loop cuts larger TCP segments to it.
    mtu: usize,
    /// The last read found the ring empty: readiness must be cleared before waiting again.
    drained: bool,
    /// The frame last read.
    frame: Vec<u8>,
}

impl Frames for PcapCapture {
    async fn ready(&mut self) {
        readable(&mut self.fd, &mut self.drained).await;
    }

    fn next(&mut self) -> Option<&mut [u8]> {
        match self.fd.get_mut().0.next_packet() {
            // Copied out of pcap's ring, which is read-only, for the loop to complete in place.
            Ok(p) => {
                self.frame.clear();
                self.frame.extend_from_slice(p.data);
                Some(&mut self.frame)
            }
            Err(e) => {
                if !matches!(e, pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) {
                    tracing::warn!(error = %e, "capture read failed");
                }
                self.drained = true;
                None
            }
        }
    }

    fn offloaded_mtu(&self) -> Option<usize> {
        Some(self.mtu)
    }
}

/// Opens capture (inbound frames only) and injection on `dev`; must run inside the tokio
/// runtime that will read the frames.
fn open_pcap(dev: &str, mtu: u32, counters: Arc<BridgeCounters>) -> Result<(PcapCapture, PcapInjector), pcap::Error> {
    let mut cap = open(dev)?.setnonblock()?;
    cap.direction(Direction::In)?;
    // The same, in the kernel: without it every frame we inject is copied into the capture
    // ring and wakes the reader, only to be discarded in user space.
    cap.filter("inbound", true)?;
    // The capture handle lives inside the AsyncFd, so its descriptor stays open exactly as
    // long as it is registered (the I/O-safety concern behind `new`'s deprecation).
    #[allow(deprecated)]
    let fd = AsyncFd::new(Handle(cap)).map_err(|e| pcap::Error::IoError(e.kind()))?;
    let inject = open(dev)?;
    let captured = PcapCapture { fd, mtu: mtu as usize, drained: false, frame: Vec::with_capacity(70_000) };
    Ok((captured, PcapInjector { cap: inject, counters }))
}

/// The capture handle, registered with tokio by its descriptor.
struct Handle(Capture<Active>);

impl AsRawFd for Handle {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
