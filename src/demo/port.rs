//! Whether the demo port is free, and which process holds it when it is not, so that
//! [`DemoError::PortInUse`] can name it.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use super::DemoError;

/// Fails with [`DemoError::PortInUse`] if `127.0.0.1:port` cannot be bound. The runtime binds with
/// `SO_REUSEPORT`, which would *share* the port with another process that also set it (an earlier
/// demo): this plain bind refuses in that case too.
pub(super) fn ensure_port_free(port: u16) -> Result<(), DemoError> {
    match TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(DemoError::PortInUse {
            port,
            holder: listener_on(port),
        }),
        // Anything else (no loopback?) will be reported by the runtime with its own words.
        Err(_) => Ok(()),
    }
}

/// The process listening on TCP `port`, as `pid 123 (name)`, from `/proc` (best effort: only
/// processes this user may inspect are found).
pub(super) fn listener_on(port: u16) -> Option<String> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st ... inode; st 0A is LISTEN.
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    if fields.get(3) != Some(&"0A") {
                        return None;
                    }
                    let local_port =
                        u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
                    (local_port == port)
                        .then(|| fields.get(9).map(|s| s.to_string()))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                let name = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", name.trim()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_a_port_is_found_in_proc() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let found = listener_on(port).expect("this process listens there");
        assert!(
            found.starts_with(&format!("pid {} (", std::process::id())),
            "{found}"
        );
    }
}
