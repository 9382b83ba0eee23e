//! `ringmaster check -c FILE` against every fixture in `tests/fixtures/config/`, through the real
//! binary, as a user or a deployment script would run it.
//!
//! Proves: every invalid fixture exits 78 (EX_CONFIG) and prints, on stderr, each of its
//! `# expect:` lines, every problem in the `FILE:LINE:COL: error:` form editors can jump to, and
//! the count of its `# problems:` line; every valid fixture exits 0 and its summary on stdout
//! names each of its services; the three-mistake fixture reports all three, not just the first;
//! `load()` on a missing file names the file.
//!
//! Fails if: a check stops at the first problem (three_errors), a message or fix changes wording
//! (the `# expect:` lines are the contract with users), a problem loses its position, `check`
//! exits with another status or writes errors to stdout, or a valid config is rejected.
//! Each failure names the fixture and shows the binary's full output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn check(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["check", "-c"])
        .arg(file)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ringmaster")
}

fn describe(file: &Path, out: &Output) -> String {
    format!(
        "{}: exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        file.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Values of the `# KEY:` header lines of a fixture.
fn header(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("# {key}:");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_owned())
        .collect()
}

/// The `LINE:COL` pairs of every `FILE:LINE:COL: error: ` line in `stderr`.
fn located_errors(stderr: &str, file: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(file)?.strip_prefix(':')?;
            let (pos, _) = rest.split_once(": error: ")?;
            let (l, c) = pos.split_once(':')?;
            Some((l.parse().ok()?, c.parse().ok()?))
        })
        .collect()
}

#[test]
fn every_invalid_fixture_fails_with_exit_78_and_located_explained_errors() {
    for file in fixtures("invalid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let out = check(&file);
        let why = describe(&file, &out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{why}");
        let expects = header(&text, "expect");
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        for expect in &expects {
            assert!(
                stderr.contains(expect.as_str()),
                "missing {expect:?}\n{why}"
            );
        }
        let located = located_errors(&stderr, &file.display().to_string());
        assert!(!located.is_empty(), "no FILE:LINE:COL: error: line\n{why}");
        assert!(located.iter().all(|&(l, c)| l >= 1 && c >= 1), "{why}");
        for n in header(&text, "problems") {
            let n: usize = n.parse().expect("# problems: N");
            assert_eq!(located.len(), n, "{why}");
            let noun = if n == 1 { "error" } else { "errors" };
            assert!(
                stderr.ends_with(&format!("{n} {noun} in {}\n", file.display())),
                "{why}"
            );
        }
    }
}

#[test]
fn every_valid_fixture_passes_and_lists_its_services() {
    for file in fixtures("valid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let out = check(&file);
        let why = describe(&file, &out);
        assert_eq!(out.status.code(), Some(0), "{why}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("name = \"")?.split('"').next())
            .collect();
        assert!(!names.is_empty(), "{} names no service", file.display());
        for name in names {
            assert!(
                stdout.lines().any(|l| l.starts_with(name)),
                "service {name:?} not listed\n{why}"
            );
        }
    }
}

#[test]
fn three_independent_errors_are_all_reported() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/invalid/three_errors.toml");
    let out = check(&file);
    let why = describe(&file, &out);
    let located = located_errors(
        &String::from_utf8_lossy(&out.stderr),
        &file.display().to_string(),
    );
    assert_eq!(located, [(12, 8), (13, 19), (20, 10)], "{why}");
}

#[test]
fn load_of_a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-ringmaster.toml");
    let err = ringmaster::config::load(&path).unwrap_err();
    assert_eq!(err.path, path);
    let shown = err.to_string();
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    assert!(shown.contains("cannot read"), "{shown}");

    let out = check(&path);
    assert_eq!(out.status.code(), Some(78), "{}", describe(&path, &out));
}
