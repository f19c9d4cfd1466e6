//! Criterion benchmarks of siit-core at catalogue scale: 1M identifiers (L = 4, 256 codes per
//! level) for the trie and the assignment, 10M rows for the duplicate passes.
//! Run: `cargo bench` (figures land in target/criterion).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use siit_core::{
    assign_unique, disambiguate, group_duplicates, Candidates, Fallback, IdentifierTrie,
};
use std::hint::black_box;
use std::time::Duration;

const LEVELS: usize = 4;
const SIZES: [i64; LEVELS] = [256; LEVELS];
const ITEMS: usize = 1_000_000;
const BEAMS: usize = 256 * 20;

fn unpack(key: u32) -> [i64; LEVELS] {
    std::array::from_fn(|l| ((key >> (8 * (LEVELS - 1 - l))) & 255) as i64)
}

/// `n` distinct random identifiers, row-major.
fn distinct_ids(n: usize, rng: &mut StdRng) -> Vec<i64> {
    let mut keys: Vec<u32> = (0..n * 11 / 10).map(|_| rng.random()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.truncate(n);
    // Shuffle so that item order is not key order.
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.random_range(0..=i));
    }
    keys.iter().flat_map(|&k| unpack(k)).collect()
}

/// A skewed code: low codes are much more likely, like real tokenizer usage.
fn skewed(rng: &mut StdRng) -> i64 {
    let u: f64 = rng.random();
    (u * u * 256.0) as i64
}

/// Beam-search-like candidates: every item's k candidates share its skewed 2-level prefix and
/// vary below it; scores fall with rank.
fn candidates(n: usize, k: usize, rng: &mut StdRng) -> (Vec<i64>, Vec<f64>) {
    let mut codes = Vec::with_capacity(n * k * LEVELS);
    let mut scores = Vec::with_capacity(n * k);
    for _ in 0..n {
        let base = [
            skewed(rng),
            skewed(rng),
            skewed(rng),
            rng.random_range(0..256),
        ];
        let mut score = -rng.random::<f64>();
        for r in 0..k {
            let mut id = base;
            if r > 0 {
                id[3] = rng.random_range(0..256);
                if rng.random_bool(0.3) {
                    id[2] = skewed(rng);
                }
            }
            codes.extend_from_slice(&id);
            scores.push(score);
            score -= rng.random::<f64>();
        }
    }
    (codes, scores)
}

fn trie(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let ids = distinct_ids(ITEMS, &mut rng);
    let mut group = c.benchmark_group("trie");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("build/1M", |b| {
        b.iter(|| IdentifierTrie::new(black_box(&ids), ITEMS, &SIZES).unwrap())
    });
    let trie = IdentifierTrie::new(&ids, ITEMS, &SIZES).unwrap();
    // Prefixes of real identifiers, as beam search would hold them.
    let rows: Vec<usize> = (0..BEAMS).map(|_| rng.random_range(0..ITEMS)).collect();
    for t in 0..LEVELS {
        let prefixes: Vec<i64> = rows
            .iter()
            .flat_map(|&i| ids[i * LEVELS..i * LEVELS + t].to_vec())
            .collect();
        group.bench_function(format!("allowed_mask/5120/t{t}"), |b| {
            b.iter(|| trie.allowed_mask(black_box(&prefixes), BEAMS, t).unwrap())
        });
    }
    let queries: Vec<i64> = rows
        .iter()
        .flat_map(|&i| ids[i * LEVELS..(i + 1) * LEVELS].to_vec())
        .collect();
    group.bench_function("lookup/5120", |b| {
        b.iter(|| trie.lookup(black_box(&queries), BEAMS).unwrap())
    });
    group.bench_function("tables/1M", |b| b.iter(|| trie.tables(black_box(1 << 22))));
    group.finish();
}

fn assign(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut group = c.benchmark_group("assign_unique");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (n, label) in [(100_000, "100k"), (ITEMS, "1M")] {
        let (codes, scores) = candidates(n, 20, &mut rng);
        group.bench_function(format!("{label}x20"), |b| {
            b.iter(|| {
                let cands = Candidates {
                    codes: black_box(&codes),
                    scores: &scores,
                    n,
                    k: 20,
                };
                assign_unique(cands, &SIZES, &[], Fallback::Nearest).unwrap()
            })
        });
    }
    group.finish();
}

fn duplicates(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(13);
    let rows = 10_000_000;
    // Codes from a space of about 2M identifiers, so that duplicates are common.
    let codes: Vec<i64> = (0..rows)
        .flat_map(|_| {
            [
                rng.random_range(0..32),
                rng.random_range(0..256),
                rng.random_range(0..256),
                0,
            ]
        })
        .collect();
    let mut group = c.benchmark_group("duplicates");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("group_duplicates/10M", |b| {
        b.iter_batched(
            || (),
            |_| group_duplicates(black_box(&codes), rows, LEVELS).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("disambiguate/10M", |b| {
        b.iter(|| disambiguate(black_box(&codes), rows, LEVELS).unwrap())
    });
    group.finish();
}

criterion_group!(benches, trie, assign, duplicates);
criterion_main!(benches);
