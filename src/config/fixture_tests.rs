//! `parse()` against every file in `tests/fixtures/config/`, without the binary: each invalid
//! fixture must fail with every `# expect:` substring in the rendered error (and exactly
//! `# problems: N` problems when the file says so); each valid fixture must parse. Also checks
//! that no prefix of any fixture makes `parse()` panic.

use std::fs;
use std::path::{Path, PathBuf};

use super::parse;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// The `# expect:` substrings and the optional `# problems:` count from a fixture's header.
fn expectations(text: &str) -> (Vec<String>, Option<usize>) {
    let mut expects = Vec::new();
    let mut count = None;
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("# expect:") {
            expects.push(e.trim().to_owned());
        } else if let Some(n) = line.strip_prefix("# problems:") {
            count = Some(n.trim().parse().expect("# problems: N"));
        }
    }
    (expects, count)
}

#[test]
fn every_invalid_fixture_reports_what_it_expects() {
    for file in fixtures("invalid") {
        let text = fs::read_to_string(&file).unwrap();
        let (expects, count) = expectations(&text);
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let err = match parse(&text, &file) {
            Ok(_) => panic!("{} parsed, but it is an invalid fixture", file.display()),
            Err(e) => e,
        };
        let shown = err.to_string();
        for expect in &expects {
            assert!(
                shown.contains(expect),
                "{}: missing {expect:?} in:\n{shown}",
                file.display()
            );
        }
        if let Some(n) = count {
            assert_eq!(err.problems.len(), n, "{}:\n{shown}", file.display());
        }
        for p in &err.problems {
            assert!(
                p.line >= 1 && p.column >= 1,
                "{}: unlocated {p:?}",
                file.display()
            );
            let prefix = format!("{}:{}:{}: error: ", file.display(), p.line, p.column);
            assert!(
                shown.contains(&prefix),
                "{}: no {prefix:?} in:\n{shown}",
                file.display()
            );
            assert!(!p.fix.is_empty(), "{}: no fix in {p:?}", file.display());
        }
    }
}

#[test]
fn three_independent_errors_are_all_reported() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/invalid/three_errors.toml");
    let text = fs::read_to_string(&file).unwrap();
    let err = parse(&text, &file).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
    let lines: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
    assert!(
        lines.windows(2).all(|w| w[0] < w[1]),
        "not in file order: {lines:?}"
    );
    assert!(err
        .to_string()
        .ends_with(&format!("3 errors in {}\n", file.display())));
}

#[test]
fn every_valid_fixture_parses() {
    for file in fixtures("valid") {
        let text = fs::read_to_string(&file).unwrap();
        let config = parse(&text, &file).unwrap_or_else(|e| panic!("{e}"));
        let summary = config.summary();
        for service in &config.services {
            assert!(summary.contains(&service.name), "{summary}");
        }
    }
}

#[test]
fn no_prefix_of_any_fixture_panics() {
    for file in fixtures("invalid").into_iter().chain(fixtures("valid")) {
        let text = fs::read_to_string(&file).unwrap();
        for (end, _) in text.char_indices() {
            let _ = parse(&text[..end], &file);
        }
    }
}

/// A token never appears in a configuration error: not as the value found, not in the source
/// line shown for a syntax error.
#[test]
fn secrets_never_appear_in_errors() {
    let secret = "zz-do-not-print-me";
    for text in [
        format!("[global]\nadmin = \"127.0.0.1:9090\"\nadmin_token = \"{secret}\"\nbogus = 1\n"),
        format!("[global]\nadmin = \"127.0.0.1:9090\"\nadmin_token = \"{secret}\n"),
        format!("[global]\nadmin = \"127.0.0.1:9090\"\nadmin_token = \"{secret} x\"\n"),
        format!(
            "[global]\nadmin = \"127.0.0.1:9090\"\nadmin_token = \"short-{secret}\"\n[[service]]\n"
        ),
    ] {
        let err = parse(&text, Path::new("t.toml")).expect_err(&text);
        let shown = err.to_string();
        assert!(!shown.contains(secret), "the token leaked:\n{shown}");
        assert!(
            !format!("{err:?}").contains(secret),
            "the token leaked in Debug"
        );
    }
}
