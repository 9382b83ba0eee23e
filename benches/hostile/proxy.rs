//! The proxy under attack: the release binary started on a generated config, its descriptors,
//! memory and CPU read from /proc, its metrics from the admin API, its access log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A running ringmaster.
pub struct Proxy {
    child: Child,
    pub admin: SocketAddr,
    pub log: PathBuf,
    dir: PathBuf,
}

impl Proxy {
    /// Starts `binary` on `services` (TOML of the `[[service]]` tables) with `global` extra lines,
    /// an admin listener and an access log in `dir`; waits until every `listen` accepts. With
    /// `nofile`, the descriptor limit (soft and hard) is set first.
    pub fn start(
        binary: &Path,
        dir: &Path,
        global: &str,
        services: &str,
        nofile: Option<u64>,
    ) -> Proxy {
        std::fs::create_dir_all(dir).expect("create dir");
        let admin = free_addr();
        let log = dir.join("access.log");
        let _ = std::fs::remove_file(&log);
        let config = format!(
            "[global]\nworkers = 1\nadmin = \"{admin}\"\naccess_log = {{ path = \"{}\" }}\n{global}\n\n{services}",
            log.display()
        );
        let path = dir.join("ringmaster.toml");
        std::fs::write(&path, &config).expect("write config");
        let out = std::fs::File::create(dir.join("ringmaster.out")).expect("log file");
        let mut command = Command::new(binary);
        command
            .args(["run", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("start ringmaster");
        let proxy = Proxy {
            child,
            admin,
            log,
            dir: dir.to_path_buf(),
        };
        let listens: Vec<SocketAddr> = config
            .lines()
            .filter_map(|l| l.strip_prefix("listen = \""))
            .filter_map(|l| l.trim_end_matches('"').parse().ok())
            .chain([admin])
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in listens {
            while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "{addr} not listening:\n{}",
                    proxy.output()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        proxy
    }

    /// What the process printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("ringmaster.out")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time used (user + system).
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// One sample of `/metrics` named `name` (with its labels, as printed), summed if several.
    pub fn metric(&self, name: &str) -> u64 {
        let Ok(mut s) = TcpStream::connect(self.admin) else {
            return 0;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Access-log lines with `end=END`, counted (after the 100 ms flush).
    pub fn ends(&self, end: &str) -> usize {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("end={end}")))
            .count()
    }

    /// Access-log lines of service `service` with `end=END`.
    pub fn ends_for(&self, service: &str, end: &str) -> usize {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("service={service} ")))
            .filter(|l| l.contains(&format!("end={end}")))
            .count()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
