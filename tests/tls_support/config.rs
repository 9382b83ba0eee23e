//! Config files for TLS services: [`TlsService`] is one `[[service]]` that terminates TLS
//! (offload or reencrypt) and [`tls_config`] writes a whole config file of them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{CertFiles, Pki, BACKEND_NAME};

/// `[service.backend_tls]` of a reencrypt service.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// `verify`: "ca", "system" or "none".
    pub verify: &'static str,
    /// `ca`, if any.
    pub ca: Option<PathBuf>,
    /// `sni`, if any.
    pub sni: Option<String>,
}

/// One `[[service]]` that terminates TLS.
#[derive(Debug, Clone)]
pub struct TlsService {
    /// `name`.
    pub name: String,
    /// `listen`.
    pub listen: SocketAddr,
    /// `mode`: "offload" or "reencrypt".
    pub mode: &'static str,
    /// `connect_timeout` (default "2s").
    pub connect_timeout: &'static str,
    /// `idle_timeout` (default "60s", longer than any test waits).
    pub idle_timeout: &'static str,
    /// `certificate` and `key`.
    pub cert: CertFiles,
    /// Each `[[service.sni_certificate]]`.
    pub sni_certs: Vec<CertFiles>,
    /// `extended_protection`, if written.
    pub extended_protection: Option<bool>,
    /// `[service.backend_tls]`, if written.
    pub backend_tls: Option<BackendTls>,
    /// Each `[[service.server]]` address.
    pub servers: Vec<SocketAddr>,
    /// More `key = value` lines for the service table (`handshake_timeout = "1s"`, ...).
    pub extra: String,
}

impl TlsService {
    /// A reencrypt service presenting the test PKI's front certificate, verifying `servers`
    /// against the test CA under the name [`BACKEND_NAME`]: the usual re-encrypt setup.
    pub fn reencrypt_to(name: &str, pki: &Pki, servers: &[SocketAddr]) -> TlsService {
        TlsService::reencrypt(name, &pki.front_files, &pki.ca_file, servers)
            .backend_sni(BACKEND_NAME)
    }

    /// An offload service presenting `cert`, on a fresh loopback port.
    pub fn offload(name: &str, cert: &CertFiles, servers: &[SocketAddr]) -> TlsService {
        TlsService {
            name: name.to_owned(),
            listen: crate::common::listen_addr(),
            mode: "offload",
            connect_timeout: "2s",
            idle_timeout: "60s",
            cert: cert.clone(),
            sni_certs: Vec::new(),
            extended_protection: None,
            backend_tls: None,
            servers: servers.to_vec(),
            extra: String::new(),
        }
    }

    /// A reencrypt service presenting `cert` that verifies its servers with `verify = "ca"`
    /// against `ca`, on a fresh loopback port.
    pub fn reencrypt(
        name: &str,
        cert: &CertFiles,
        ca: &Path,
        servers: &[SocketAddr],
    ) -> TlsService {
        TlsService {
            backend_tls: Some(BackendTls {
                verify: "ca",
                ca: Some(ca.to_path_buf()),
                sni: None,
            }),
            mode: "reencrypt",
            ..TlsService::offload(name, cert, servers)
        }
    }

    /// Sets `[service.backend_tls] sni`.
    pub fn backend_sni(mut self, sni: &str) -> TlsService {
        if let Some(b) = self.backend_tls.as_mut() {
            b.sni = Some(sni.to_owned());
        }
        self
    }

    /// Adds a `key = value` line to the service table.
    pub fn with(mut self, line: &str) -> TlsService {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    /// The `[[service]]` table and its sub-tables.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "[[service]]");
        let _ = writeln!(t, "name = \"{}\"", self.name);
        let _ = writeln!(t, "listen = \"{}\"", self.listen);
        let _ = writeln!(t, "mode = \"{}\"", self.mode);
        let _ = writeln!(t, "connect_timeout = \"{}\"", self.connect_timeout);
        let _ = writeln!(t, "idle_timeout = \"{}\"", self.idle_timeout);
        let _ = writeln!(t, "certificate = {}", toml_path(&self.cert.cert));
        let _ = writeln!(t, "key = {}", toml_path(&self.cert.key));
        if let Some(ep) = self.extended_protection {
            let _ = writeln!(t, "extended_protection = {ep}");
        }
        t.push_str(&self.extra);
        for extra in &self.sni_certs {
            let _ = writeln!(t, "\n[[service.sni_certificate]]");
            let _ = writeln!(t, "certificate = {}", toml_path(&extra.cert));
            let _ = writeln!(t, "key = {}", toml_path(&extra.key));
        }
        if let Some(b) = &self.backend_tls {
            let _ = writeln!(t, "\n[service.backend_tls]");
            let _ = writeln!(t, "verify = \"{}\"", b.verify);
            if let Some(ca) = &b.ca {
                let _ = writeln!(t, "ca = {}", toml_path(ca));
            }
            if let Some(sni) = &b.sni {
                let _ = writeln!(t, "sni = \"{sni}\"");
            }
        }
        for server in &self.servers {
            let _ = writeln!(t, "\n[[service.server]]\naddress = \"{server}\"");
        }
        t
    }
}

/// A whole config file: `[global]` with `workers`, then `services`.
pub fn tls_config(workers: u32, services: &[TlsService]) -> String {
    let mut t = format!("[global]\nworkers = {workers}\ndrain_timeout = \"2s\"\n");
    for s in services {
        t.push('\n');
        t.push_str(&s.toml());
    }
    t
}

/// A path as a TOML basic string (test paths need no escaping; checked).
fn toml_path(path: &Path) -> String {
    let s = path.to_str().expect("UTF-8 path");
    assert!(
        !s.contains(['"', '\\']) && !s.chars().any(char::is_control),
        "test path needs escaping in TOML: {s:?}"
    );
    format!("\"{s}\"")
}
