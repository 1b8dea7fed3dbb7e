//! The data path allocates nothing per frame once warm.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use router_core::{Decision, Destination, TRANSMIT_BUF_MIN};
use weave_benches::{frame, Pair};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the test's own thread is counted: the test harness's threads allocate as they
    /// please (progress reports, output capture).
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTED.with(std::cell::Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One test (the allocation counter is global): plaintext, then sealed and opened.
#[test]
fn forwarding_learned_unicast_and_receiving_allocate_nothing_per_frame_plain_or_sealed() {
    rounds_allocate_nothing(None);
    rounds_allocate_nothing(Some("pw"));
}

fn rounds_allocate_nothing(password: Option<&str>) {
    let mut p = Pair::established_with(password);
    assert_eq!(p.routers[0].status(p.now).encryption, password.is_some());
    let now = p.now;
    let (a_mac, b_mac) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    p.routers[1].handle_frame(now, &frame([0xff; 6], b_mac, 60));
    p.shuttle();
    let f = frame(b_mac, a_mac, 1400);
    assert!(matches!(p.routers[0].decide(now, &f), Decision::Unicast { .. }));
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    let from = "10.0.0.1:6783".parse().unwrap();
    let mut round = |p: &mut Pair| {
        p.routers[0].handle_frame(now, &f);
        let t = p.routers[0].poll_transmit(&mut buf).expect("one datagram");
        p.routers[1].handle_datagram(now, from, &buf[..t.len]);
        // The first datagram of a watch asks for an answer: a heartbeat may go out first.
        let mut injected = 0;
        while let Some(t) = p.routers[1].poll_transmit(&mut buf) {
            if t.dest == Destination::Bridge {
                assert_eq!(t.len, f.len());
                injected += 1;
            }
        }
        assert_eq!(injected, 1);
    };
    for _ in 0..100 {
        round(&mut p);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTED.with(|c| c.set(true));
    for _ in 0..10_000 {
        round(&mut p);
    }
    COUNTED.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0, "password: {password:?}");
    assert_eq!(p.routers[1].stats().frames_injected, 10_100);
}
