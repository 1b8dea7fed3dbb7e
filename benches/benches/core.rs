//! Core benchmarks: forwarding decision, route recomputation, gossip merge.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use router_core::routes::Routes;
use router_core::topology::{merge_entry, View};
use router_core::wire::control::Message;
use router_core::wire::gossip::{PeerEntry, Update};
use router_core::{Decision, PeerName, TRANSMIT_BUF_MIN};
use weave_benches::{frame, random_view, Pair};

const A_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

fn forwarding(c: &mut Criterion) {
    let mut p = Pair::established();
    // B's container announces itself; A learns that B_MAC lives behind B.
    let now = p.now;
    p.routers[1].handle_frame(now, &frame([0xff; 6], B_MAC, 60));
    p.shuttle();
    let f = frame(B_MAC, A_MAC, 1400);
    let a = &mut p.routers[0];
    assert_eq!(a.decide(now, &f), Decision::Unicast { dst: PeerName::from_u64(2), via: PeerName::from_u64(2) });
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide_learned_unicast", |b| b.iter(|| black_box(a.decide(now, black_box(&f)))));
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    g.bench_function("handle_frame_and_poll_1400B", |b| {
        b.iter(|| {
            a.handle_frame(now, black_box(&f));
            while let Some(t) = a.poll_transmit(&mut buf) {
                black_box(t);
            }
        })
    });
    g.finish();
}

/// The same capture-to-datagram path with a password: the frame is sealed on its way out.
fn forwarding_encrypted(c: &mut Criterion) {
    let mut p = Pair::established_with(Some("bench"));
    let now = p.now;
    p.routers[1].handle_frame(now, &frame([0xff; 6], B_MAC, 60));
    p.shuttle();
    let f = frame(B_MAC, A_MAC, 1400);
    let a = &mut p.routers[0];
    let mut buf = vec![0u8; TRANSMIT_BUF_MIN];
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Bytes(1400));
    g.bench_function("handle_frame_and_poll_1400B_encrypted", |b| {
        b.iter(|| {
            a.handle_frame(now, black_box(&f));
            while let Some(t) = a.poll_transmit(&mut buf) {
                black_box(t);
            }
        })
    });
    g.finish();
}

/// The two AEADs the data path could use, sealing one 1 400-byte datagram body in place.
fn aead(c: &mut Criterion) {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let mut g = c.benchmark_group("aead");
    g.throughput(Throughput::Bytes(1400));
    let mut body = vec![0x5au8; 1400];
    let key = [7u8; 32];
    let chacha = chacha20poly1305::ChaCha20Poly1305::new(&key.into());
    let aes = aes_gcm::Aes256Gcm::new(&key.into());
    let mut n = 0u64;
    let mut nonce = move || {
        n += 1;
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        b
    };
    g.bench_function("chacha20poly1305_seal_1400B", |b| {
        b.iter(|| black_box(chacha.encrypt_in_place_detached(&nonce().into(), &[0; 24], &mut body).unwrap()))
    });
    for (name, alg) in [
        ("ring_chacha20poly1305_seal_1400B", &ring::aead::CHACHA20_POLY1305),
        ("ring_aes256gcm_seal_1400B", &ring::aead::AES_256_GCM),
    ] {
        let k = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(alg, &key).unwrap());
        g.bench_function(name, |b| {
            b.iter(|| {
                let n = ring::aead::Nonce::assume_unique_for_key(nonce());
                black_box(k.seal_in_place_separate_tag(n, ring::aead::Aad::from([0u8; 24]), &mut body).unwrap())
            })
        });
    }
    g.bench_function("aes256gcm_seal_1400B", |b| {
        b.iter(|| black_box(aes.encrypt_in_place_detached(&nonce().into(), &[0; 24], &mut body).unwrap()))
    });
    g.finish();
}

fn routes(c: &mut Criterion) {
    let view = random_view(1000, 4, 7);
    let me = PeerName::from_u64(1);
    c.bench_function("routes/unicast_1000_peers_degree_4", |b| {
        b.iter(|| black_box(Routes::build(black_box(&view), me)))
    });
    let mut r = Routes::build(&view, me);
    let src = PeerName::from_u64(500);
    c.bench_function("routes/broadcast_tree_1000_peers", |b| {
        b.iter_batched(|| r.clone(), |mut r| black_box(r.broadcast_children(src).len()), BatchSize::SmallInput)
    });
    black_box(r.broadcast_children(src));
}

fn gossip(c: &mut Criterion) {
    let old = random_view(1000, 4, 7);
    let newer: View = old
        .values()
        .map(|e| {
            let mut e = PeerEntry::clone(e);
            e.version += 1;
            Arc::new(e)
        })
        .collect();
    let mut bytes = Vec::new();
    // 1000 entries of ~110 bytes fit in two update messages; encode them as the wire carries them.
    let entries: Vec<_> = newer.values().cloned().collect();
    for chunk in entries.chunks(500) {
        Message::GossipUpdate(Update { entries: chunk.to_vec() }).emit(&mut bytes);
    }
    c.bench_function("gossip/decode_and_merge_update_1000_peers", |b| {
        b.iter_batched(
            || old.clone(),
            |mut view: View| {
                let mut rest = &bytes[..];
                let mut merged = 0;
                while !rest.is_empty() {
                    let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    let Ok(Message::GossipUpdate(u)) = Message::parse(&rest[4..4 + len]) else { unreachable!() };
                    for e in u.entries {
                        merged += usize::from(merge_entry(&mut view, e));
                    }
                    rest = &rest[4 + len..];
                }
                assert_eq!(merged, 1000);
                view
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, forwarding, forwarding_encrypted, aead, routes, gossip);
criterion_main!(benches);
