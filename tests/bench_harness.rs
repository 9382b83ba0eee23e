//! The HAProxy comparison harness (`benches/compare/run.sh`) still parses, rejects what it does
//! not know, and plans every mode, test and proxy with the proxies alternating (A B A B) — all
//! through `--dry-run`, which installs, builds and starts nothing, so this runs in milliseconds.
//!
//! How these fail: a syntax error in the script fails `bash -n`; a mode, test or proxy dropped
//! from the plan, or runs grouped by proxy instead of alternated, fails the plan checks; a typo in
//! a flag that is silently ignored (instead of usage and exit 2) fails `unknown_flag_exits_2`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

const MODES: [&str; 3] = ["passthrough", "offload", "reencrypt"];
const TESTS: [&str; 4] = ["keepalive", "bulk", "handshake", "idle"];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/compare/run.sh")
}

fn harness(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("bash runs")
}

/// One planned run: `rep=1 mode=reencrypt test=keepalive proxy=ringmaster`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    rep: u32,
    mode: String,
    test: String,
    proxy: String,
}

fn plan(args: &[&str]) -> Vec<Run> {
    let out = harness(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run.sh {args:?} exited {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<Run> = stdout
        .lines()
        .filter(|l| l.starts_with("rep="))
        .map(|l| {
            let kv: BTreeMap<&str, &str> = l
                .split_whitespace()
                .filter_map(|f| f.split_once('='))
                .collect();
            Run {
                rep: kv["rep"].parse().expect("rep is a number"),
                mode: kv["mode"].to_string(),
                test: kv["test"].to_string(),
                proxy: kv["proxy"].to_string(),
            }
        })
        .collect();
    assert!(!runs.is_empty(), "no runs planned:\n{stdout}");
    runs
}

fn proxies_of(mode: &str) -> Vec<&'static str> {
    if mode == "reencrypt" {
        vec!["ringmaster", "haproxy", "haproxy-http"]
    } else {
        vec!["ringmaster", "haproxy"]
    }
}

/// Every (mode, test) block is `reps` repetitions of its proxies in the same order, back to back.
fn assert_alternating(runs: &[Run], reps: u32) {
    let mut i = 0;
    for mode in MODES {
        for test in TESTS {
            for rep in 1..=reps {
                for proxy in proxies_of(mode) {
                    let want = Run {
                        rep,
                        mode: mode.into(),
                        test: test.into(),
                        proxy: proxy.into(),
                    };
                    assert_eq!(runs.get(i), Some(&want), "run #{i} of the plan");
                    i += 1;
                }
            }
        }
    }
    assert_eq!(
        i,
        runs.len(),
        "runs beyond the expected plan: {:?}",
        &runs[i..]
    );
}

#[test]
fn script_is_valid_bash() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(script())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn quick_dry_run_plans_every_mode_test_and_both_proxies() {
    let runs = plan(&["--quick", "--dry-run"]);
    let modes: BTreeSet<&str> = runs.iter().map(|r| r.mode.as_str()).collect();
    let tests: BTreeSet<&str> = runs.iter().map(|r| r.test.as_str()).collect();
    assert_eq!(
        modes,
        MODES.into_iter().collect(),
        "modes in the quick plan"
    );
    assert_eq!(
        tests,
        TESTS.into_iter().collect(),
        "tests in the quick plan"
    );
    for mode in MODES {
        for test in TESTS {
            let proxies: BTreeSet<&str> = runs
                .iter()
                .filter(|r| r.mode == mode && r.test == test)
                .map(|r| r.proxy.as_str())
                .collect();
            assert_eq!(
                proxies,
                proxies_of(mode).into_iter().collect(),
                "{mode} {test}"
            );
        }
    }
    assert_alternating(&runs, 1);
}

#[test]
fn full_dry_run_alternates_the_proxies_three_times() {
    let runs = plan(&["--dry-run", "--reps", "3"]);
    assert_alternating(&runs, 3);
}

#[test]
fn modes_and_tests_can_be_chosen() {
    let runs = plan(&[
        "--dry-run",
        "--modes",
        "offload",
        "--tests",
        "idle,bulk",
        "--reps",
        "2",
    ]);
    let got: Vec<(u32, &str, &str, &str)> = runs
        .iter()
        .map(|r| (r.rep, r.mode.as_str(), r.test.as_str(), r.proxy.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "offload", "idle", "ringmaster"),
            (1, "offload", "idle", "haproxy"),
            (2, "offload", "idle", "ringmaster"),
            (2, "offload", "idle", "haproxy"),
            (1, "offload", "bulk", "ringmaster"),
            (1, "offload", "bulk", "haproxy"),
            (2, "offload", "bulk", "ringmaster"),
            (2, "offload", "bulk", "haproxy"),
        ]
    );
}

#[test]
fn unknown_flag_exits_2_with_usage() {
    for args in [
        &["--bogus"][..],
        &["--dry-run", "--reps", "0"],
        &["--dry-run", "--reps"],
        &["--dry-run", "--modes", "tcp"],
        &["--dry-run", "--tests", "latency"],
    ] {
        let out = harness(args);
        assert_eq!(out.status.code(), Some(2), "run.sh {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("usage:"),
            "run.sh {args:?} printed no usage: {stderr}"
        );
        assert!(out.stdout.is_empty(), "run.sh {args:?} planned runs anyway");
    }
}
