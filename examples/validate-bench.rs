//! Times `bundle::validate` for benches/validation.py (not a test: speed numbers live in benches/).
//!
//! `validate-bench repeat N DIR` validates one case directory N times and prints microseconds per
//! validation; `validate-bench batch DIR...` validates each directory once (as the differential test does)
//! and prints the total and per-1,000 milliseconds. Each directory holds the four `cacerts` files.

use std::path::Path;
use std::time::Instant;

use cacerts_sync::bundle::{self, RawMaterial, ValidationOptions};

fn read(dir: &Path) -> RawMaterial {
    RawMaterial::from_fn(|role| std::fs::read(dir.join(role.file_name())).expect("case file"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = ValidationOptions::default();
    match args.first().map(String::as_str) {
        Some("repeat") => {
            let n: u32 = args[1].parse().expect("N");
            let raw = read(Path::new(&args[2]));
            let verdict = bundle::validate(&raw, &opts, None).verdict;
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(bundle::validate(std::hint::black_box(&raw), &opts, None));
            }
            let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
            println!("{{\"verdict\": \"{verdict}\", \"iterations\": {n}, \"us_per_validation\": {per:.1}}}");
        }
        Some("batch") => {
            let raws: Vec<RawMaterial> = args[1..].iter().map(|d| read(Path::new(d))).collect();
            let start = Instant::now();
            for raw in &raws {
                std::hint::black_box(bundle::validate(raw, &opts, None));
            }
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let per_1000 = ms * 1000.0 / raws.len().max(1) as f64;
            println!("{{\"cases\": {}, \"ms\": {ms:.1}, \"ms_per_1000\": {per_1000:.1}}}", raws.len());
        }
        _ => {
            eprintln!("usage: validate-bench repeat N DIR | validate-bench batch DIR...");
            std::process::exit(2);
        }
    }
}
