//! The event loop's sockets on Linux, through tokio: UDP with large buffers, "don't fragment"
//! and the error queue for path MTU reports, GRO on receive and GSO (or `sendmmsg`) on send.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use crate::eventloop::Stack;

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
        // Let the kernel coalesce a burst of equal datagrams into one read (UDP GRO).
        let _ = setsockopt(&u, sockopt::UdpGroSegment, &true);
        // Every datagram leaves with "don't fragment" (the overlay never relies on the
        // underlay fragmenting), and what the path reports comes back on the error queue.
        {
            use std::os::fd::AsFd;
            if let Err(e) = crate::sys::set_dont_fragment_probe(u.as_fd()) {
                tracing::warn!(error = %e, "cannot set \"don't fragment\" on the UDP socket");
            }
        }
        if let Err(e) = setsockopt(&u, sockopt::Ipv4RecvErr, &true) {
            tracing::warn!(error = %e, "cannot receive path MTU errors on the UDP socket");
        }
        Ok(u)
    }
    fn path_mtu_reports(u: &Self::Udp) -> Vec<(SocketAddr, usize)> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
        thread_local! {
            /// Room for the error's control message, allocated once per thread: the queue is
            /// read at every timer wake-up, and is nearly always empty.
            static CMSG: std::cell::RefCell<Vec<u8>> =
                std::cell::RefCell::new(nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in));
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        CMSG.with_borrow_mut(|cmsg| {
            // Bounded: the queue holds at most what the socket's buffer allows.
            for _ in 0..1024 {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = match recvmsg::<SockaddrStorage>(
                    u.as_raw_fd(),
                    &mut iov,
                    Some(cmsg),
                    MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(m) => m,
                    Err(_) => break,
                };
                let to = msg.address.and_then(|a| a.as_sockaddr_in().map(|v4| SocketAddr::V4((*v4).into())));
                let Ok(cmsgs) = msg.cmsgs() else { continue };
                for c in cmsgs {
                    if let ControlMessageOwned::Ipv4RecvErr(e, _) = c {
                        if e.ee_errno == nix::libc::EMSGSIZE as u32 && e.ee_info > 0 {
                            if let Some(to) = to {
                                out.push((to, e.ee_info as usize));
                            }
                        }
                    }
                }
            }
        });
        out
    }
    async fn recv(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        u.async_io(tokio::io::Interest::READABLE, || recv_gro(u, buf)).await
    }
    fn try_recv(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        u.try_io(tokio::io::Interest::READABLE, || recv_gro(u, buf))
    }
    fn try_send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        u.try_send_to(buf, to)
    }
    fn send_batch(u: &Self::Udp, batch: &[(&[u8], SocketAddr)]) -> usize {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
        if batch.len() == 1 {
            return usize::from(u.try_send_to(batch[0].0, batch[0].1).is_ok());
        }
        if GSO.load(std::sync::atomic::Ordering::Relaxed) {
            return send_gso(u, batch);
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = batch.iter().map(|(_, a)| Some(SockaddrStorage::from(*a))).collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
        let none: [ControlMessage<'_>; 0] = [];
        // One system call for the whole batch. Readiness is not consulted: a full buffer
        // (EAGAIN) drops the rest of the batch, like a failed try_send_to.
        match sendmmsg(u.as_raw_fd(), &mut headers, &iovs, addrs, none, MsgFlags::MSG_DONTWAIT) {
            Ok(r) => r.count(),
            Err(e) => {
                tracing::debug!(error = %e, "sendmmsg failed");
                0
            }
        }
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

/// UDP segmentation offload works on this host (cleared at the first refusal).
static GSO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Most datagrams in one segmentation-offload send, and their most bytes in all.
const GSO_SEGMENTS_MAX: usize = 64;
const GSO_BYTES_MAX: usize = 65_000;

/// One `recvmsg`, with the GRO segment size when the kernel coalesced datagrams.
fn recv_gro(u: &tokio::net::UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
    use std::os::fd::AsRawFd;

    thread_local! {
        /// Room for the GRO control message, allocated once per thread, not per read.
        static CMSG: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(nix::cmsg_space!(i32));
    }
    CMSG.with_borrow_mut(|cmsg| recv_gro_with(u.as_raw_fd(), buf, cmsg))
}

fn recv_gro_with(fd: std::os::fd::RawFd, buf: &mut [u8], cmsg: &mut Vec<u8>) -> io::Result<(usize, SocketAddr, usize)> {
    use std::io::IoSliceMut;

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)?;
    let n = msg.bytes;
    let mut seg = n;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(s) = c {
                seg = usize::try_from(s).unwrap_or(n).max(1);
            }
        }
    }
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::V4((*v4).into()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
    });
    let from = from.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without an IP source"))?;
    Ok((n, from, seg))
}

/// Sends a batch with UDP segmentation offload: each run of datagrams to one address, all of
/// one size but the last (which may be shorter), goes down the stack as one buffer that the
/// kernel cuts into datagrams at the last moment. Returns how many datagrams went out.
fn send_gso(u: &tokio::net::UdpSocket, batch: &[(&[u8], SocketAddr)]) -> usize {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};
    let mut sent = 0;
    let mut i = 0;
    while i < batch.len() {
        let (first, to) = batch[i];
        let seg = first.len();
        let mut j = i + 1;
        let mut bytes = seg;
        while j < batch.len()
            && j - i < GSO_SEGMENTS_MAX
            && batch[j].1 == to
            && batch[j].0.len() <= seg
            && bytes + batch[j].0.len() <= GSO_BYTES_MAX
        {
            bytes += batch[j].0.len();
            j += 1;
            if batch[j - 1].0.len() < seg {
                break; // only the last may be shorter
            }
        }
        let run = &batch[i..j];
        let ok = if run.len() == 1 {
            u.try_send_to(first, to).is_ok()
        } else {
            let iovs: Vec<IoSlice<'_>> = run.iter().map(|(b, _)| IoSlice::new(b)).collect();
            let seg16 = u16::try_from(seg).unwrap_or(u16::MAX);
            let cmsg = [ControlMessage::UdpGsoSegments(&seg16)];
            let addr = SockaddrStorage::from(to);
            match sendmsg(u.as_raw_fd(), &iovs, &cmsg, MsgFlags::MSG_DONTWAIT, Some(&addr)) {
                Ok(_) => true,
                Err(nix::errno::Errno::EAGAIN) => false,
                // An error an earlier datagram earned (ICMP, reported on the error queue), or a
                // path too narrow: this run is lost, as UDP may lose it; segmentation works.
                Err(
                    nix::errno::Errno::EMSGSIZE
                    | nix::errno::Errno::ECONNREFUSED
                    | nix::errno::Errno::EHOSTUNREACH
                    | nix::errno::Errno::ENETUNREACH
                    | nix::errno::Errno::EHOSTDOWN,
                ) => false,
                Err(e) => {
                    // The device or kernel cannot segment: send one by one from now on.
                    tracing::info!(error = %e, "UDP segmentation offload refused; sending datagrams one by one");
                    GSO.store(false, std::sync::atomic::Ordering::Relaxed);
                    return sent + batch[i..].iter().take_while(|(b, a)| u.try_send_to(b, *a).is_ok()).count();
                }
            }
        };
        if !ok {
            return sent;
        }
        sent += run.len();
        i = j;
    }
    sent
}
