//! Scheduler micro-benchmarks: the cost of choosing a server for a new connection.
//!
//! Run with `cargo bench --bench balance`. The pick is on every connection's path, so it must stay
//! far below the cost of an accept (~1 µs): smooth weighted round robin is O(servers).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmaster::balance::SmoothRoundRobin;

fn smooth_round_robin(c: &mut Criterion) {
    let mut group = c.benchmark_group("smooth_round_robin_pick");
    group.throughput(Throughput::Elements(1));
    for servers in [2usize, 8, 32] {
        let weights: Vec<u32> = (0..servers).map(|i| 1 + (i as u32 % 4)).collect();
        let mut rr = SmoothRoundRobin::new(weights);
        group.bench_with_input(BenchmarkId::from_parameter(servers), &servers, |b, _| {
            b.iter(|| black_box(rr.pick()))
        });
    }
    group.finish();
}

fn failover_order(c: &mut Criterion) {
    let mut rr = SmoothRoundRobin::new([3, 1, 2, 1]);
    c.bench_function("failover_order_4_servers", |b| {
        b.iter(|| black_box(rr.failover_order().sum::<usize>()))
    });
}

criterion_group!(benches, smooth_round_robin, failover_order);
criterion_main!(benches);
