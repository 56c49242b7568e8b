//! Render time of a small camera JPEG, a 9-megapixel camera JPEG and the 1800x1200
//! orientation photo, all from the shared fixtures, into the default 256x256 box.
//!
//! Run with `cargo bench -p sluice-handlers`. For 15-18 megapixel photos and a comparison
//! with vipsthumbnail and ImageMagick, run `scripts/bench-thumbnails`.

// criterion_group! and criterion_main! generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_handlers::thumbnail::{render, ThumbnailOptions};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/images");

fn read_fixture(relative_path: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(relative_path);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn render_benchmarks(criterion: &mut Criterion) {
    let options = ThumbnailOptions::default();
    let cases = [
        ("camera_640x480", "camera/canon-ixus.jpg"),
        ("orientation_1800x1200", "orientation/Landscape_6.jpg"),
        ("camera_4608x1976", "camera/HMD_Nokia_8.3_5G.jpg"),
    ];
    let mut group = criterion.benchmark_group("render");
    group.sample_size(20);
    for (name, relative_path) in cases {
        let bytes = read_fixture(relative_path);
        group.bench_function(name, |bencher| {
            bencher.iter(|| render(black_box(&bytes), &options).expect("fixture renders"));
        });
    }
    group.finish();
}

criterion_group!(benches, render_benchmarks);
criterion_main!(benches);
