//! The one socket option no safe wrapper offers: `IP_MTU_DISCOVER`. This is the only unsafe
//! code in the crate.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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
