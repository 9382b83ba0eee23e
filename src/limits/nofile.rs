//! The descriptor budget: how many client connections fit in the process's descriptor limit
//! (`RLIMIT_NOFILE`, `ulimit -n`, systemd's `LimitNOFILE=`) once everything else that needs a
//! descriptor has its room. That is the default of `[global] max_connections`.
//!
//! Each client connection costs two descriptors (the client's socket and the server's). Kept
//! aside: [`FIXED`] for the process itself (standard streams, the access log, signals, the admin
//! listener, an Extended Protection probe, a reload's new listeners), per worker its ring, reactor
//! and one listener per service, one per server for its health checker, the warm pools
//! (`warm` × servers × workers), and the admin API's connections and its wake-up pair. So a flood that reaches the
//! limit leaves health checks, warm pools, the admin API and the log their descriptors, and never
//! meets `EMFILE` at accept.

use std::io;

use crate::config::Config;

/// Descriptors kept for the process itself, whatever the configuration.
pub const FIXED: u64 = 64;
/// Descriptors of one worker besides its listeners: the io_uring, tokio's epoll, its eventfd, a
/// timer.
pub const PER_WORKER: u64 = 4;
/// Descriptors one client connection uses: its own socket and its server's.
pub const PER_CONNECTION: u64 = 2;

/// The descriptor limit and how it is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` in force.
    pub nofile: u64,
    /// Descriptors kept for everything but client connections.
    pub reserved: u64,
    /// Client connections that fit in the rest: the default `max_connections`.
    pub connections: u32,
}

impl Budget {
    /// The budget of `config` run by `workers` workers under a limit of `nofile` descriptors.
    pub fn new(config: &Config, workers: usize, nofile: u64) -> Self {
        let workers = workers as u64;
        let services = config.services.len() as u64;
        let servers: u64 = config.services.iter().map(|s| s.servers.len() as u64).sum();
        let warm: u64 = config
            .services
            .iter()
            .map(|s| u64::from(s.warm) * s.servers.len() as u64 * workers)
            .sum();
        // The admin API's connections and its event loop's wake-up pair.
        let admin = if config.global.admin.is_some() {
            crate::admin::server::MAX_CONNECTIONS as u64 + 2
        } else {
            0
        };
        let reserved = FIXED + workers * (PER_WORKER + services) + servers + warm + admin;
        let connections = (nofile.saturating_sub(reserved) / PER_CONNECTION)
            .clamp(1, u64::from(crate::config::MAX_CONNECTIONS));
        Self {
            nofile,
            reserved,
            connections: connections as u32,
        }
    }

    /// Descriptors `max_connections` connections need with this reserve.
    pub fn needed(&self, max_connections: u32) -> u64 {
        self.reserved + u64::from(max_connections) * PER_CONNECTION
    }
}

/// Raises the soft descriptor limit to the hard one (as Go's runtime and systemd advise: the soft
/// limit exists for `select(2)` programs). Returns the soft limit now in force and the one before.
pub fn raise_to_hard() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok((raised.rlim_cur, before));
        }
    }
    Ok((before, before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        crate::config::parse(text, Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn every_reserve_is_counted_and_two_descriptors_go_to_a_connection() {
        let c = config(
            "[global]\nadmin = \"127.0.0.1:9090\"\n\
             [[service]]\nname = \"a\"\nlisten = \"127.0.0.1:1000\"\nmode = \"passthrough\"\n\
             [[service.server]]\naddress = \"127.0.0.1:2000\"\n\
             [[service.server]]\naddress = \"127.0.0.1:2001\"\n",
        );
        let b = Budget::new(&c, 2, 20_000);
        // 64 fixed, 2 workers × (4 + 1 listener), 2 health checkers, 256 admin connections and
        // the admin loop's wake-up pair.
        assert_eq!(b.reserved, 64 + 10 + 2 + 258);
        assert_eq!(b.connections, (20_000 - 334) / 2);
        assert_eq!(b.needed(b.connections), 20_000, "334 + 2 × 9833");
        assert_eq!(Budget::new(&c, 2, 10).connections, 1, "never zero");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (now, before) = raise_to_hard().expect("rlimit");
        assert!(now >= before);
    }
}
