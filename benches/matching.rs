//! Policy matching at scale: the cost of finding the policies of one image
//! among 1, 1,000 and 10,000 ClusterImagePolicies with distinct
//! registry/repository globs (a mix of `**`, `*` and literal paths, on 20
//! registries), through the glob index, and — as the yardstick in the same
//! run — by trying every glob in turn, as sigil did before the index.
//!
//! Run: `cargo bench --bench matching`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sigil::image::ImageRef;
use sigil::model::error::PolicyError;
use sigil::policy::glob::ImageGlob;
use sigil::policy::{InvalidPolicy, LoadedPolicy, PolicySet};

/// Policy `i`'s glob: one team per policy, 20 registries, a third each of
/// `team/**`, `team/*` and a literal repository.
fn glob(i: usize) -> String {
    let host = format!("registry-{}.example.com", i % 20);
    match i % 3 {
        0 => format!("{host}/team-{i}/**"),
        1 => format!("{host}/team-{i}/*"),
        _ => format!("{host}/team-{i}/app"),
    }
}

fn policies(n: usize) -> Vec<LoadedPolicy> {
    // Matching looks only at globs, so the policies carry nothing else.
    (0..n)
        .map(|i| {
            let g = glob(i);
            LoadedPolicy::Invalid(Arc::new(InvalidPolicy {
                name: format!("team-{i}"),
                error: PolicyError {
                    field: "spec".into(),
                    message: "globs only".into(),
                },
                globs: vec![ImageGlob::compile(&g).expect("glob")],
            }))
        })
        .collect()
}

/// Every glob tried in turn: the matching sigil did before the index.
fn scan(all: &[LoadedPolicy], image: &ImageRef) -> usize {
    let name = image.glob_name();
    all.iter()
        .filter(|p| {
            p.globs()
                .iter()
                .any(|g| g.matches_names(&name, &image.original))
        })
        .count()
}

fn matching(c: &mut Criterion) {
    let digest = format!("sha256:{}", "ab".repeat(32));
    // An image of policy 0 (team-0/**), pinned as the webhook requires.
    let image = ImageRef::parse(&format!(
        "registry-0.example.com/team-0/app/api:v1@{digest}"
    ))
    .expect("image");
    let mut group = c.benchmark_group("match_one_image");
    for n in [1usize, 1_000, 10_000] {
        let all = policies(n);
        let set = PolicySet::new(all.clone());
        assert_eq!(set.matching(&image).len(), 1);
        assert_eq!(scan(&all, &image), 1);
        group.bench_with_input(BenchmarkId::new("index", n), &n, |b, _| {
            b.iter(|| black_box(set.matching(black_box(&image))))
        });
        if n <= 1_000 {
            group.bench_with_input(BenchmarkId::new("scan", n), &n, |b, _| {
                b.iter(|| black_box(scan(black_box(&all), black_box(&image))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
