//! Headless Chromium for the stats page: find it, run it under a deadline, read state cells.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long Chromium may take to load and dump or shoot the page before it is killed.
pub const CHROMIUM_DEADLINE: Duration = Duration::from_secs(60);

/// Finds Chromium: `$CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with `args`, killed after [`CHROMIUM_DEADLINE`]. `HOME` and
/// the profile are a fresh temporary folder. Returns stdout; panics on a failure or a timeout,
/// with Chromium's stderr.
pub fn run_chromium(bin: &Path, args: &[String], url: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .args(args)
        .arg(url)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHROMIUM_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("chromium {args:?} failed ({s}); stderr:\n{err}"),
        None => panic!("chromium {args:?} ran over {CHROMIUM_DEADLINE:?}; stderr:\n{err}"),
    }
}

/// The text of the `<td class="state" ...>` cell in one `<tr>...</tr>` of serialised DOM.
pub fn state_cell(row: &str) -> Option<&str> {
    let cell = &row[row.find("<td class=\"state\"")?..];
    let text = &cell[cell.find('>')? + 1..];
    Some(&text[..text.find("</td>")?])
}
