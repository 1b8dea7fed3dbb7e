//! Capture and injection on the router's bridge port, with pcap.
//!
//! A blocking thread reads frames arriving at the port (promiscuous, immediate mode, inbound
//! only, so frames we inject are not read back) and hands them to the event loop; injection
//! writes on a second handle.

use pcap::{Active, Capture, Direction};
use tokio::sync::mpsc;

/// Writes frames into the bridge.
pub(crate) struct Injector {
    cap: Capture<Active>,
    errors: u64,
}

impl Injector {
    /// Injects one frame; failures are logged and counted.
    pub(crate) fn inject(&mut self, frame: &[u8]) {
        if let Err(e) = self.cap.sendpacket(frame) {
            self.errors += 1;
            if self.errors.is_power_of_two() {
                tracing::warn!(error = %e, errors = self.errors, "injecting into the bridge failed");
            }
        }
    }
}

fn open(dev: &str) -> Result<Capture<Active>, pcap::Error> {
    Capture::from_device(dev)?.promisc(true).immediate_mode(true).snaplen(65_535).buffer_size(4 << 20).timeout(0).open()
}

/// Starts capturing on `dev`; frames go to `tx`. Returns the injector.
pub(crate) fn start(dev: &str, tx: mpsc::Sender<Vec<u8>>) -> Result<Injector, pcap::Error> {
    let mut cap = open(dev)?;
    cap.direction(Direction::In)?;
    // The same, in the kernel: without it every frame we inject is copied into the capture
    // ring and wakes the capture thread, only to be discarded in user space.
    cap.filter("inbound", true)?;
    let inject = open(dev)?;
    let dev = dev.to_string();
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || loop {
            match cap.next_packet() {
                Ok(p) => {
                    if tx.blocking_send(p.data.to_vec()).is_err() {
                        break;
                    }
                }
                // No timeout is set (reads block: no CPU while idle); be robust anyway.
                Err(pcap::Error::TimeoutExpired) => {
                    if tx.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(device = %dev, error = %e, "capture stopped");
                    break;
                }
            }
        })
        .map_err(|e| pcap::Error::IoError(e.kind()))?;
    Ok(Injector { cap: inject, errors: 0 })
}
