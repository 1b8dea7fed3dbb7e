//! Capture and injection on the router's bridge port with `AF_PACKET` sockets carrying
//! virtio-net headers: frames pass whole, up to 64 KiB, both ways.
//!
//! Captured frames come as the containers' stacks handed them over (TCP segments of up to
//! 64 KiB, checksums partial), and the event loop completes them (`segment`) as with pcap.
//! Frames for the bridge are coalesced first (`vnet::coalesce`): a run of one flow's TCP
//! segments goes in as one super-frame that the kernel delivers whole to the receiving
//! container's stack, which then runs once per 64 KiB instead of once per segment.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::sys::socket::{recv, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::unix::AsyncFd;
use weave_host_io::sys::{packet_socket, PacketRole};
use weave_host_io::vnet::{self, Piece, VnetHdr, HDR_LEN};

use crate::capture::{failed, BridgeCounters};

/// Room for the header and the largest frame: a 64 KiB IP packet and an Ethernet header with
/// two VLAN tags.
const FRAME_MAX: usize = HDR_LEN + 65_535 + 22;

/// Frames arriving at the bridge port.
pub(crate) struct PacketCapture {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
    /// The bridge's MTU: the loop cuts larger TCP segments to it.
    mtu: usize,
    /// The last read found nothing: readiness must be cleared before waiting again.
    drained: bool,
    counters: Arc<BridgeCounters>,
}

impl weave_host_io::eventloop::Frames for PacketCapture {
    async fn ready(&mut self) {
        crate::capture::readable(&mut self.fd, &mut self.drained).await;
    }

    fn next(&mut self) -> Option<&mut [u8]> {
        loop {
            // MSG_TRUNC: the frame's real length, even when it did not fit.
            match recv(self.fd.get_ref().as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    failed(&self.counters.capture_failed, 1, "captured frame larger than 64 KiB dropped", &n);
                }
                Ok(n) if n < HDR_LEN + 14 => {
                    failed(&self.counters.capture_failed, 1, "captured frame too short dropped", &n);
                }
                // The header's offload metadata is not needed: the frame's own headers say
                // how to cut and complete it.
                Ok(n) => return Some(&mut self.buf[HDR_LEN..n]),
                Err(nix::errno::Errno::EAGAIN) => {
                    self.drained = true;
                    return None;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    failed(&self.counters.capture_failed, 1, "capture read failed", &e);
                    self.drained = true;
                    return None;
                }
            }
        }
    }

    fn offloaded_mtu(&self) -> Option<usize> {
        Some(self.mtu)
    }
}

/// Writes frames into the bridge, coalescing each batch's TCP segments.
pub(crate) struct PacketInjector {
    fd: OwnedFd,
    joined: Vec<u8>,
    members: Vec<usize>,
    pieces: Vec<Piece>,
    counters: Arc<BridgeCounters>,
}

impl PacketInjector {
    /// Injects a batch, as few frames and system calls as coalescing allows; failures are
    /// logged and counted.
    pub(crate) fn inject(&mut self, frames: &[&[u8]]) {
        vnet::coalesce(frames, &mut self.joined, &mut self.members, &mut self.pieces);
        let supers = self.pieces.iter().filter(|p| matches!(p, Piece::Joined { .. })).count();
        if supers > 0 {
            let joined = frames.len() - (self.pieces.len() - supers);
            self.counters.superframes.fetch_add(supers as u64, Ordering::Relaxed);
            self.counters.segments_joined.fetch_add(joined as u64, Ordering::Relaxed);
        }
        let hdrs: Vec<[u8; HDR_LEN]> = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Frame(_) => VnetHdr::default().emit(),
                Piece::Joined { hdr, .. } => hdr.emit(),
            })
            .collect();
        // Each piece as one message: its header, then its parts, gathered by the kernel.
        let iovs: Vec<Vec<IoSlice<'_>>> = self
            .pieces
            .iter()
            .zip(&hdrs)
            .map(|(p, h)| {
                let parts = p.parts(frames, &self.joined, &self.members);
                std::iter::once(IoSlice::new(h)).chain(parts.into_iter().map(IoSlice::new)).collect()
            })
            .collect();
        let mut at = 0;
        while at < iovs.len() {
            // The socket is bound to the port: no address per message.
            let rest = &iovs[at..];
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(rest.len(), None);
            let none: [ControlMessage<'_>; 0] = [];
            let addrs = vec![None; rest.len()];
            match sendmmsg(self.fd.as_raw_fd(), &mut headers, rest, addrs, none, MsgFlags::empty()) {
                Ok(r) => match r.count() {
                    0 => {
                        let n = rest.len() as u64;
                        failed(&self.counters.inject_failed, n, "injecting into the bridge failed", &"nothing sent");
                        return;
                    }
                    n => at += n,
                },
                Err(nix::errno::Errno::EINTR) => {}
                // The first frame was refused: count it and go on with the rest.
                Err(e) => {
                    failed(&self.counters.inject_failed, 1, "injecting into the bridge failed", &e);
                    at += 1;
                }
            }
        }
    }
}

/// Opens capture and injection on `dev` with packet sockets; must run inside the tokio
/// runtime that will read the frames. Fails where the kernel lacks what they need.
pub(crate) fn open_port(
    dev: &str,
    mtu: u32,
    counters: Arc<BridgeCounters>,
) -> io::Result<(PacketCapture, PacketInjector)> {
    let ifindex = nix::net::if_::if_nametoindex(dev).map_err(io::Error::from)?;
    let cap = packet_socket(ifindex, PacketRole::Capture)?;
    let inj = packet_socket(ifindex, PacketRole::Inject)?;
    // The socket lives inside the AsyncFd, so its descriptor stays open exactly as long as it
    // is registered (the I/O-safety concern behind `new`'s deprecation).
    #[allow(deprecated)]
    let fd = AsyncFd::new(cap)?;
    let capture =
        PacketCapture { fd, buf: vec![0; FRAME_MAX], mtu: mtu as usize, drained: false, counters: counters.clone() };
    Ok((capture, PacketInjector { fd: inj, joined: Vec::new(), members: Vec::new(), pieces: Vec::new(), counters }))
}
