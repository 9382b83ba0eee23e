//! The proxy under test: [`Proxy`] runs the real `ringmaster` binary on a config written to a
//! temporary directory, waits until every `listen` address accepts, and prints the tail of its
//! log when a test panics; [`passthrough_config`] writes the config most passthrough tests use.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::free_port;

/// How long [`Proxy::start`] waits for every `listen` address to accept.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of the proxy's log shown when a test panics: the tail is where the failure is.
const LOG_TAIL_ON_PANIC: usize = 24 * 1024;

/// Options of [`passthrough_config`] with the values most tests want.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `[global] workers`.
    pub workers: u32,
    /// `[global] drain_timeout`.
    pub drain_timeout: &'static str,
    /// The service's `connect_timeout`.
    pub connect_timeout: &'static str,
    /// The service's `idle_timeout`.
    pub idle_timeout: &'static str,
    /// The service's `server_speaks_first`: connect at once (for backends that greet first)
    /// instead of waiting for the client's first byte.
    pub server_speaks_first: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            workers: 2,
            drain_timeout: "5s",
            connect_timeout: "1s",
            idle_timeout: "60s",
            server_speaks_first: false,
        }
    }
}

/// A config with one passthrough service on `listen` over `servers` (address, weight).
pub fn passthrough_config(
    listen: SocketAddr,
    servers: &[(SocketAddr, u32)],
    opts: &Opts,
) -> String {
    let mut toml = format!(
        "[global]\n\
         workers = {}\n\
         drain_timeout = \"{}\"\n\
         \n\
         [[service]]\n\
         name = \"test\"\n\
         listen = \"{listen}\"\n\
         mode = \"passthrough\"\n\
         connect_timeout = \"{}\"\n\
         idle_timeout = \"{}\"\n\
         server_speaks_first = {}\n",
        opts.workers,
        opts.drain_timeout,
        opts.connect_timeout,
        opts.idle_timeout,
        opts.server_speaks_first
    );
    for (address, weight) in servers {
        toml.push_str(&format!(
            "\n[[service.server]]\naddress = \"{address}\"\nweight = {weight}\n"
        ));
    }
    toml
}

/// A loopback listen address for a proxy service, from [`free_port`].
pub fn listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The `key = "ip:port"` addresses of a config (`listen`, `admin`), in order.
fn addrs_of(config: &str, key: &str) -> Vec<SocketAddr> {
    config
        .lines()
        .filter_map(|line| {
            let (k, value) = line.split_once('=')?;
            if k.trim() != key {
                return None;
            }
            let value = value.trim().trim_matches('"');
            Some(
                value
                    .parse()
                    .unwrap_or_else(|e| panic!("{key} address {value:?} in test config: {e}")),
            )
        })
        .collect()
}

/// A running `ringmaster run` process. Dropping it kills it (SIGKILL) and reaps it; if the test
/// is panicking, the tail of the proxy's log is printed first.
pub struct Proxy {
    child: Child,
    exit: Option<ExitStatus>,
    listen: Vec<SocketAddr>,
    log_path: PathBuf,
    config_path: PathBuf,
    // Kept for its Drop: removes the config and log.
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Writes `config` to a temporary directory, starts `ringmaster run -c FILE --log-level debug`
    /// with stdout and stderr in a log file there, and waits until every `listen` address of the
    /// config, and its `admin` address, accept (polling, up to [`READY_TIMEOUT`]). Panics with the log if the process exits
    /// or does not listen in time.
    pub fn start(config: &str) -> Proxy {
        Proxy::start_with_nofile(config, None)
    }

    /// Like [`Proxy::start`], with the descriptor limit (`ulimit -n`, soft and hard) set to
    /// `nofile` when given.
    pub fn start_with_nofile(config: &str, nofile: Option<u64>) -> Proxy {
        Proxy::start_with(config, nofile, &[])
    }

    /// Like [`Proxy::start`], with the descriptor limit set to `nofile` when given and `env`
    /// added to the environment (`RINGMASTER_FAULTS`, ...).
    pub fn start_with(config: &str, nofile: Option<u64>, env: &[(&str, &str)]) -> Proxy {
        let listen = addrs_of(config, "listen");
        assert!(
            !listen.is_empty(),
            "test config has no listen address:\n{config}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("ringmaster.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("ringmaster.log");
        let log = File::create(&log_path).expect("create log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringmaster"));
        command.envs(env.iter().copied());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .args(["--log-level", "debug"])
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .expect("spawn ringmaster");
        let mut proxy = Proxy {
            child,
            exit: None,
            listen,
            log_path,
            config_path,
            _dir: dir,
        };
        proxy.wait_ready(config);
        proxy
    }

    fn wait_ready(&mut self, config: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let admin = addrs_of(config, "admin");
        for addr in self
            .listen
            .iter()
            .chain(&admin)
            .copied()
            .collect::<Vec<_>>()
        {
            loop {
                if let Some(status) = self.try_exit() {
                    panic!(
                        "ringmaster exited ({status}) before listening on {addr}\n\
                         --- config ---\n{config}\n--- log ---\n{}",
                        self.logs()
                    );
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "ringmaster not accepting on {addr} after {READY_TIMEOUT:?}\n\
                         --- config ---\n{config}\n--- log ---\n{}",
                        self.logs()
                    );
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file the proxy was started with.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// The directory holding the config and log (for files a test wants beside them).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Replaces the configuration file (the proxy reads it on SIGHUP or `POST /api/reload`).
    pub fn write_config(&self, config: &str) {
        let tmp = self.config_path.with_extension("new");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("replace config");
    }

    /// Number of log lines containing `needle` so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.logs().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until at least `n` log lines contain `needle`; false after `within`.
    pub fn wait_log_count(&self, needle: &str, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log_count(needle) >= n {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.log_count(needle) >= n
    }

    /// Open file descriptors of the process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// CPU time the process has used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The first `listen` address of the config.
    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    /// All `listen` addresses of the config, in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// Sends `signal` to the process (no-op once it has been reaped).
    pub fn signal(&self, signal: libc::c_int) {
        if self.exit.is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child, so it cannot
        // name another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit (polling); its status, or None if it is
    /// still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read {}: {e})", self.log_path.display()),
        }
    }

    /// The last [`LOG_TAIL_ON_PANIC`] bytes of [`Proxy::logs`].
    pub fn logs_tail(&self) -> String {
        let logs = self.logs();
        let mut start = logs.len().saturating_sub(LOG_TAIL_ON_PANIC);
        while !logs.is_char_boundary(start) {
            start += 1;
        }
        logs[start..].to_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- ringmaster log (pid {}, last {} KiB) ---\n{}\n--- end of ringmaster log ---",
                self.pid(),
                LOG_TAIL_ON_PANIC / 1024,
                self.logs_tail()
            );
        }
    }
}
