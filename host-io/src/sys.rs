//! The socket calls no safe wrapper offers: `IP_MTU_DISCOVER`, and the packet sockets of the
//! data path (`AF_PACKET` with virtio-net headers). This is the only unsafe code in the crate.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::libc;

/// Sets "don't fragment" on every datagram the IPv4 socket sends, without the kernel's path
/// MTU cache limiting what may be sent (`IP_PMTUDISC_PROBE`): the router probes sizes above
/// a cached path MTU itself, and learns of smaller ones through the socket's error queue.
#[allow(unsafe_code)]
pub fn set_dont_fragment_probe(fd: BorrowedFd<'_>) -> io::Result<()> {
    let v: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: `fd` is a valid, open socket for the borrow's lifetime; the option value is a
    // `c_int` that lives across the call, and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an integer (or struct) socket option.
#[allow(unsafe_code)]
fn set_opt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `fd` is open for the borrow's lifetime; `v` is a plain value that lives across
    // the call, and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (v as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What a packet socket on an interface is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketRole {
    /// Reads every frame the interface receives (promiscuous), not those it sends: so none
    /// that the router injects.
    Capture,
    /// Only sends (it is bound to no protocol, so it receives nothing), past the
    /// interface's queueing discipline.
    Inject,
}

/// Opens an `AF_PACKET` socket on the interface numbered `ifindex` in which every frame, read
/// or written, carries a virtio-net header ([`crate::vnet`]): segmentation and checksum
/// offload metadata, so frames of up to 64 KiB pass whole. The capture socket is
/// non-blocking; the injection socket blocks while the interface's buffer is full. Fails
/// where the kernel lacks a feature it needs (`PACKET_VNET_HDR`, Linux 2.6.38;
/// `PACKET_IGNORE_OUTGOING`, Linux 4.20).
#[allow(unsafe_code)]
pub fn packet_socket(ifindex: u32, role: PacketRole) -> io::Result<OwnedFd> {
    let flags = match role {
        PacketRole::Capture => libc::SOCK_NONBLOCK,
        PacketRole::Inject => 0,
    };
    // Protocol 0 until bound: the socket receives nothing from other interfaces meanwhile.
    // SAFETY: plain system call; the descriptor it returns is owned by nothing else.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let b = std::os::fd::AsFd::as_fd(&fd);
    let one: libc::c_int = 1;
    set_opt(b, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one)?;
    let protocol = match role {
        PacketRole::Capture => {
            set_opt(b, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)?;
            let size: libc::c_int = 8 << 20;
            if set_opt(b, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
                set_opt(b, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
            }
            let mr = libc::packet_mreq {
                mr_ifindex: ifindex as libc::c_int,
                mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            set_opt(b, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)?;
            (libc::ETH_P_ALL as u16).to_be()
        }
        PacketRole::Inject => {
            // Older kernels lack it; frames then pass the queueing discipline, as pcap's do.
            let _ = set_opt(b, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one);
            let size: libc::c_int = 4 << 20;
            if set_opt(b, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &size).is_err() {
                set_opt(b, libc::SOL_SOCKET, libc::SO_SNDBUF, &size)?;
            }
            0
        }
    };
    // SAFETY: an all-zero `sockaddr_ll` is valid; the fields that matter are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = protocol;
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `sll` is a valid `sockaddr_ll` that lives across the call, and its size is
    // passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
