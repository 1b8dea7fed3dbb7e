//! Refusals are typed and reach both ends; bad bytes close a connection, never the router.

mod common;

use common::*;
use router_core::wire::control::{Handshake, Message};
use router_core::wire::preamble::Preamble;
use router_core::{
    Config, ConnError, Destination, Duration, Event, Instant, PeerName, PeerUid, RefuseReason, Router, TRANSMIT_BUF_MIN,
};

fn router() -> Router {
    Router::new(Instant::ZERO, Config::new(PeerName::from_u64(1))).expect("a valid configuration")
}

/// Everything the router wrote to `conn`, and its events.
fn drain(r: &mut Router) -> (Vec<u8>, Vec<Event>) {
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    let mut bytes = Vec::new();
    while let Some(t) = r.poll_transmit(&mut buf) {
        if let Destination::Conn(_) = t.dest {
            bytes.extend_from_slice(&buf[..t.len]);
        }
    }
    (bytes, std::iter::from_fn(|| r.poll_event()).collect())
}

fn refused_with(events: &[Event], reason: RefuseReason) -> bool {
    events.iter().any(|e| matches!(e, Event::ConnectionDown { reason: ConnError::Refused(r), .. } if *r == reason))
        && events.iter().any(|e| matches!(e, Event::Close { .. }))
}

#[test]
fn a_stranger_with_the_wrong_magic_is_closed() {
    let mut r = router();
    let c = r.accept(Instant::ZERO, "10.0.0.9:5000".parse().unwrap());
    drain(&mut r);
    r.handle_stream(Instant::ZERO, c, b"GET / HTTP/1.1\r\n\r\n");
    let (_, ev) = drain(&mut r);
    assert!(refused_with(&ev, RefuseReason::BadMagic), "{ev:?}");
}

#[test]
fn no_common_version_is_refused_on_the_wire() {
    let mut r = router();
    let c = r.accept(Instant::ZERO, "10.0.0.9:5000".parse().unwrap());
    drain(&mut r);
    r.handle_stream(Instant::ZERO, c, &Preamble { version_min: 7, version_max: 9 }.emit());
    let (bytes, ev) = drain(&mut r);
    assert!(refused_with(&ev, RefuseReason::NoCommonVersion), "{ev:?}");
    assert!(bytes.ends_with(&[0, 0, 0, 2, 2, 2]), "a Refuse(NoCommonVersion) frame was sent");
}

#[test]
fn a_peer_using_our_name_is_refused_as_a_collision() {
    let mut r = router();
    let c = r.accept(Instant::ZERO, "10.0.0.9:5000".parse().unwrap());
    drain(&mut r);
    let mut bytes = Preamble::OURS.emit().to_vec();
    Message::Handshake(Handshake {
        name: PeerName::from_u64(1),
        uid: PeerUid(12345),
        nickname: "impostor".into(),
        udp_port: 6783,
        tcp_port: 6783,
        session: 1,
        flags: 0,
        pake: None,
    })
    .emit(&mut bytes);
    // Byte by byte: framing copes with any split of the stream.
    for b in bytes.chunks(1) {
        r.handle_stream(Instant::ZERO, c, b);
    }
    let (_, ev) = drain(&mut r);
    assert!(refused_with(&ev, RefuseReason::NameCollision), "{ev:?}");
}

#[test]
fn an_oversized_frame_is_a_protocol_error() {
    let mut r = router();
    let c = r.accept(Instant::ZERO, "10.0.0.9:5000".parse().unwrap());
    drain(&mut r);
    let mut bytes = Preamble::OURS.emit().to_vec();
    bytes.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    r.handle_stream(Instant::ZERO, c, &bytes);
    let (bytes, ev) = drain(&mut r);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::ConnectionDown { reason: ConnError::Malformed(m), .. } if m.contains("frame length"))
        ),
        "{ev:?}"
    );
    assert!(bytes.ends_with(&[0, 0, 0, 2, 2, 8]), "a Refuse(ProtocolError) frame was sent");
    assert_eq!(r.stats().control_errors, 1);
}

#[test]
fn over_the_connection_limit_the_dialler_hears_why() {
    let mut net = Net::with_config(3, |i| {
        let mut c = config(i, i as u64 + 1);
        c.conn_limit = 1;
        c
    });
    net.connect(0, 1);
    net.run_for(Duration::from_secs(2));
    net.connect(2, 0);
    net.run_for(Duration::from_secs(1));
    let st = net.hosts[2].router.status(net.now);
    let t = &st.targets[0];
    assert_eq!(t.last_error.as_deref(), Some("refused by peer: connection limit reached"), "{st:#?}");
    assert!(net.established(0, 1), "the existing connection is untouched");
}

#[test]
fn discovery_dials_peers_learned_from_gossip_and_can_be_turned_off() {
    for discovery in [true, false] {
        let mut net = Net::with_config(3, |i| {
            let mut c = config(i, i as u64 + 1);
            c.discovery = discovery;
            c
        });
        net.connect(0, 1);
        net.connect(2, 1);
        net.run_for(Duration::from_secs(5));
        assert_eq!(net.established(0, 2), discovery, "discovery {discovery}");
        let hops = net.hosts[0].router.routes().distance(name(2));
        assert_eq!(hops, Some(if discovery { 1 } else { 2 }));
    }
}

#[test]
fn the_status_snapshot_serialises_with_every_section() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run_for(Duration::from_secs(2));
    let st = net.hosts[0].router.status(net.now);
    let v: serde_json::Value = serde_json::to_value(&st).unwrap();
    for key in [
        "name",
        "uid",
        "version",
        "peers",
        "unicast_routes",
        "broadcast_routes",
        "macs",
        "connections",
        "targets",
        "stats",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["connections"][0]["state"], "established");
    assert_eq!(v["stats"]["drops"]["no_route"], 0);
    assert_eq!(v["name"], name(0).to_string());
}

#[test]
fn poll_timeout_is_the_exact_next_deadline() {
    let mut r = router();
    let t0 = r.poll_timeout().expect("anti-entropy is always armed");
    // Nothing is due before the deadline: handling a timeout early changes nothing.
    let before = r.topology().clone();
    r.handle_timeout(Instant::from_micros(t0.as_micros() - 1));
    assert_eq!(r.poll_timeout(), Some(t0));
    assert_eq!(r.topology(), &before);
    r.handle_timeout(t0);
    assert!(r.poll_timeout().unwrap() > t0);
}

#[test]
fn gossip_about_more_peers_than_the_limit_is_refused_and_counted() {
    let mut net = Net::with_config(2, |i| {
        let mut c = config(i, i as u64 + 1);
        c.peers_max = 2;
        c
    });
    net.connect(0, 1);
    net.run_for(Duration::from_secs(2));
    assert!(net.established(0, 1), "two peers fit");
    let mut net = Net::with_config(3, |i| {
        let mut c = config(i, i as u64 + 1);
        c.peers_max = 2;
        c
    });
    net.connect(0, 1);
    net.connect(2, 1);
    net.run_for(Duration::from_secs(3));
    for h in &net.hosts {
        assert!(h.router.topology().len() <= 2, "no host holds more than its limit");
    }
    let refused: u64 = net.hosts.iter().map(|h| h.router.stats().gossip_entries_refused).sum();
    assert!(refused > 0, "the entries beyond the limit were refused and counted");
}
