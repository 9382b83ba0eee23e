//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, seeds from `fuzz/make_seeds.py` and what
//! the fuzzers found) through the same entry points the fuzz targets call, on the stable
//! toolchain: every input must be handled without a panic, and quickly.
//!
//! Fails if a corpus directory is empty (the replay would test nothing) or if any input panics
//! (the panic names the file).

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = corpus(target);
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn config_corpus() {
    replay("config", ringmaster::fuzz::config);
}

#[test]
fn client_hello_corpus() {
    replay("client_hello", ringmaster::fuzz::client_hello);
}

#[test]
fn admin_request_corpus() {
    replay("admin_request", ringmaster::fuzz::admin_request);
}
