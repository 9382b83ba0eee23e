//! Source-hash and least-connections micro-benchmarks.
//!
//! Run with `cargo bench --bench maglev`. Two costs matter and live on different paths:
//! - `maglev_build`: building a 65,537-slot table, done by the health checker whenever a server
//!   goes up or down — off the connection path, but it bounds how fast the pool can react;
//! - `maglev_lookup` and `least_conn_pick`: paid on every new connection, so they must stay far
//!   below the cost of an accept (~1 µs).
//!
//! Record the machine (CPU model, `nproc`) with the figures; compare only runs on one machine.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmaster::balance::maglev::{MaglevTable, DEFAULT_TABLE_SIZE};
use ringmaster::balance::ConnCounts;

/// Distinct client addresses cycled through by the lookup benches: more than fit in the caches'
/// hot lines, so a lookup pays a realistic table read, not the same slot every time.
const CLIENTS: usize = 4_096;

fn servers(n: usize) -> Vec<(String, u32, bool)> {
    (0..n)
        .map(|i| {
            (
                format!("10.0.{}.{}:443", i / 250, 1 + i % 250),
                1 + (i as u32 % 3),
                true,
            )
        })
        .collect()
}

fn maglev_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build_65537");
    group.throughput(Throughput::Elements(1));
    for n in [4usize, 16, 64] {
        let s = servers(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| {
            b.iter(|| black_box(MaglevTable::build(black_box(s), DEFAULT_TABLE_SIZE)))
        });
    }
    group.finish();
}

fn maglev_lookup(c: &mut Criterion) {
    let table = MaglevTable::build(&servers(16), DEFAULT_TABLE_SIZE);
    let v4: Vec<IpAddr> = (0..CLIENTS as u32)
        .map(|i| {
            IpAddr::V4(Ipv4Addr::from(
                0xc0a8_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
            ))
        })
        .collect();
    let v6: Vec<IpAddr> = (0..CLIENTS as u128)
        .map(|i| {
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8u128 << 96) | (i * 0x9e37_79b9_7f4a_7c15),
            ))
        })
        .collect();
    let mut group = c.benchmark_group("maglev_lookup_16_servers");
    group.throughput(Throughput::Elements(1));
    for (name, ips) in [("ipv4", &v4), ("ipv6", &v6)] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % CLIENTS;
                black_box(table.lookup(black_box(ips[i])))
            })
        });
    }
    group.finish();
}

fn least_conn_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("least_conn_pick");
    group.throughput(Throughput::Elements(1));
    for n in [4usize, 32] {
        let counts = ConnCounts::new(n);
        let weights: Vec<u32> = (0..n).map(|i| 1 + (i as u32 % 4)).collect();
        // A loaded pool: uneven counts, held for the whole bench.
        let _held: Vec<_> = (0..n * 10).map(|i| counts.acquire((i * 7) % n)).collect();
        let mut tie = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(n), &weights, |b, w| {
            b.iter(|| {
                tie = tie.wrapping_add(1);
                black_box(counts.pick(w, |i| i != 1, tie))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, maglev_build, maglev_lookup, least_conn_pick);
criterion_main!(benches);
