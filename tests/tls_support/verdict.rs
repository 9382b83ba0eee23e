//! Running the binary for a verdict: `ringmaster` commands that must exit by themselves
//! ([`run_to_exit`]), `openssl s_client` as an independent client ([`s_client`]), and waits that
//! poll a condition or the proxy's log against a deadline.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::FRONT_NAME;

/// How a `ringmaster` command that should exit by itself ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Its stdout and stderr, interleaved.
    pub output: String,
}

/// Runs `ringmaster ARGS...` with stdout and stderr in a file in `dir`, and waits up to
/// `within` for it to exit. If it is still running then, it is killed and the test fails with
/// its output (a `run` that should have refused its config and started serving instead).
pub fn run_to_exit(dir: &Path, args: &[&str], within: Duration) -> Finished {
    let log_path = dir.join(format!(
        "ringmaster-{}.out",
        args.join("_").replace('/', "_")
    ));
    let log = File::create(&log_path).expect("create output file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone output file"))
        .stderr(log)
        .spawn()
        .expect("spawn ringmaster");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let output =
        String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    match status {
        Some(status) => Finished { status, output },
        None => panic!("ringmaster {args:?} still running after {within:?}; output:\n{output}"),
    }
}

/// Runs `openssl s_client` against `addr` asking for [`FRONT_NAME`] and trusting `ca`, with
/// `args` added and an empty stdin (so it closes right after the handshake); whether it exited
/// 0, and its stdout and stderr. Panics, saying so, when openssl is not installed (the test
/// command, `tests/run.sh`, installs it).
pub fn s_client(addr: SocketAddr, ca: &Path, args: &[&str]) -> (bool, String) {
    let ca = ca.to_str().expect("UTF-8 path");
    let connect = addr.to_string();
    let child = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", FRONT_NAME])
        .args(["-CAfile", ca])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "this test needs openssl (Debian package `openssl`); `bash tests/run.sh` installs it"
        ),
        Err(e) => panic!("openssl s_client: {e}"),
    };
    let within = Duration::from_secs(20);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(within)
        .unwrap_or_else(|_| panic!("openssl s_client {args:?} did not finish within {within:?}"))
        .expect("openssl s_client output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Polls `cond` until it holds or `within` has passed; whether it held.
pub fn wait_until(within: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `within` until `pred(logs)` holds, polling `logs`; true if it did.
pub fn wait_for_log(
    logs: impl Fn() -> String,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if pred(&logs()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
