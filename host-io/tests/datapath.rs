//! The data path between the bridge and the routers: packet sockets that move 64 KiB
//! super-frames both ways, and pcap as the fallback. Large TCP transfers in both directions at
//! once, compared byte for byte, plain, encrypted, through a relay, on either backend and
//! between the two, with outputs written by the loop or by a thread of their own.
//!
//! Needs root (CI runs as root). Every test makes its own uniquely named namespaces and
//! removes them, and its routers, even when it fails.

mod common;

use common::*;

/// Bytes each way.
const LEN: usize = 16 << 20;

const SUPERFRAMES: &str = "weave_bridge_port_total{event=\"superframe_injected\"}";
const JOINED: &str = "weave_bridge_port_total{event=\"segment_joined\"}";

fn data_path(lab: &Lab, host: usize) -> String {
    let s = String::from_utf8_lossy(&lab.weave(host, &["status"]).stdout).into_owned();
    s.lines().find(|l| l.contains("Data path:")).unwrap_or_else(|| panic!("no data path in {s}")).to_string()
}

/// Two hosts, each launched with `args`, a container on each; both directions at once.
fn both_ways(args: [&[&str]; 2], secret: Secret) -> Lab {
    let mut lab = Lab::new(2, &[(0, 1)]);
    lab.launch_args(0, args[0], &[], secret);
    lab.launch_args(1, args[1], &["10.201.0.1"], secret);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c1 = lab.container(1, &["10.32.0.2/24"]);
    assert!(lab.pings(&c0, "10.32.0.2", SETTLE));
    lab.transfers(&[(&c0, &c1, "10.32.0.2"), (&c1, &c0, "10.32.0.1")], LEN);
    lab
}

fn assert_superframes(lab: &Lab, host: usize) {
    let (supers, joined) = (lab.metric(host, SUPERFRAMES), lab.metric(host, JOINED));
    assert!(supers > 0, "h{host} injected super-frames");
    assert!(joined >= 2 * supers, "each joins at least two segments: {joined} in {supers}");
}

const OWN_THREAD: &str = "written on a thread of their own";

#[test]
fn large_transfers_both_ways_arrive_byte_for_byte_as_super_frames() {
    let lab = both_ways([&["--capture", "packet", "--data-threads", "1"], &["--capture", "packet"]], Secret::None);
    for h in 0..2 {
        assert!(data_path(&lab, h).contains("packet sockets with virtio-net headers"), "{}", data_path(&lab, h));
        assert_superframes(&lab, h);
        assert_eq!(lab.metric(h, "weave_bridge_port_total{event=\"inject_failed\"}"), 0);
    }
    assert!(data_path(&lab, 0).contains("one thread"), "{}", data_path(&lab, 0));
}

#[test]
fn transfers_both_ways_arrive_byte_for_byte_with_outputs_on_a_thread_of_their_own() {
    let lab = both_ways([&["--data-threads", "2"], &["--data-threads", "2"]], Secret::None);
    for h in 0..2 {
        assert!(data_path(&lab, h).contains(OWN_THREAD), "{}", data_path(&lab, h));
        assert_superframes(&lab, h);
    }
    let o = lab.weave(0, &["launch", "--data-threads", "3"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--data-threads"), "{err}");
}

#[test]
fn encrypted_transfers_both_ways_arrive_byte_for_byte_as_super_frames() {
    let lab = both_ways([&["--data-threads", "2"], &["--data-threads", "1"]], Secret::File("correct horse battery"));
    for h in 0..2 {
        assert!(data_path(&lab, h).contains("packet sockets"), "auto picks packet sockets: {}", data_path(&lab, h));
        assert_superframes(&lab, h);
    }
}

/// h0 on packet sockets, h1 on pcap: the wire is the same, so they interwork; pcap injects
/// only frames up to the MTU.
#[test]
fn the_pcap_fallback_carries_transfers_and_talks_to_a_packet_socket_router() {
    let lab = both_ways([&["--capture", "packet"], &["--capture", "pcap"]], Secret::None);
    assert!(data_path(&lab, 1).contains("pcap"), "{}", data_path(&lab, 1));
    assert_superframes(&lab, 0);
    assert_eq!(lab.metric(1, SUPERFRAMES), 0, "pcap injects no super-frames");
    assert!(lab.metric(1, "weave_frames_total{event=\"injected\"}") > (LEN / 1500) as u64);
    let o = lab.weave(0, &["launch", "--capture", "tap"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--capture") && err.contains("packet"), "{err}");
}

#[test]
fn transfers_through_a_relay_arrive_byte_for_byte() {
    // h0 - h1 - h2: no underlay between h0 and h2; h1 relays every segment.
    let mut lab = Lab::new(3, &[(0, 1), (1, 2)]);
    lab.launch_args(1, &["--capture", "packet", "--data-threads", "2"], &[], Secret::None);
    lab.launch_args(0, &["--capture", "packet"], &["10.201.0.2"], Secret::None);
    lab.launch_args(2, &["--capture", "packet"], &["10.201.1.1"], Secret::None);
    let c0 = lab.container(0, &["10.32.0.1/24"]);
    let c2 = lab.container(2, &["10.32.0.3/24"]);
    assert!(lab.pings(&c0, "10.32.0.3", SETTLE), "the ends talk through h1");
    lab.transfers(&[(&c0, &c2, "10.32.0.3"), (&c2, &c0, "10.32.0.1")], LEN);
    assert!(lab.metric(1, "weave_frames_total{event=\"relayed\"}") > (2 * LEN / 1500) as u64, "h1 relayed them");
    assert!(data_path(&lab, 1).contains(OWN_THREAD), "{}", data_path(&lab, 1));
    assert_superframes(&lab, 0);
    assert_superframes(&lab, 2);
}
