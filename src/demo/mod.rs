//! `ringmaster demo`: a self-contained re-encrypt service with Extended Protection, to try
//! ringmaster with nothing but the binary.
//!
//! It generates one self-signed certificate in a private temporary directory, starts two small
//! HTTPS servers in this process that present that same certificate, writes a config with one
//! `reencrypt` service on `127.0.0.1:8443` (`extended_protection = true`, backend verification
//! against the same certificate), checks Extended Protection with [`crate::ep_check`] exactly as
//! `ringmaster ep-check` would, prints what to try, and serves with [`crate::runtime::run`] until
//! SIGINT/SIGTERM. Each demo server prints one line per request it answers, so the user sees which
//! server got each request. The directory is removed at exit (best effort).
//!
//! This file owns the entry point, the errors, and the config and banner the demo writes; `pki`
//! owns the temporary directory and the certificate; `server` owns the demo HTTPS servers; `port`
//! checks the demo port and finds who holds it.

mod pki;
mod port;
mod server;

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::config::ConfigError;
use crate::runtime::RuntimeError;
use crate::tls::channel_binding::tls_server_end_point;

use pki::{write_certificate, write_file, CertFiles, DemoDir};
use port::{ensure_port_free, listener_on};
use server::{demo_server_config, start_demo_server};

/// The port of the demo service unless `--port` says otherwise: fixed, so that the line printed
/// for `curl` is always the same.
pub const DEMO_PORT: u16 = 8443;

/// Names in the demo certificate (`127.0.0.1` becomes an IP subjectAltName).
pub const DEMO_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "ringmaster.demo"];

/// How many demo HTTPS servers stand behind the service.
const DEMO_SERVERS: usize = 2;

/// How long the demo's SIGTERM waits for open connections (`[global] drain_timeout`): a demo
/// should stop promptly, and a `curl` is over in milliseconds.
const DEMO_DRAIN_TIMEOUT: &str = "5s";

/// Why the demo could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The demo port is taken.
    #[error(
        "127.0.0.1:{port} is already in use{holder}: stop that process (an earlier `ringmaster demo`?) and run the demo again \
         (`ss -ltnp 'sport = :{port}'` shows who listens there)",
        holder = holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default()
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The process listening there, when it could be found (`pid 123 (nginx)`).
        holder: Option<String>,
    },
    /// The temporary directory could not be created.
    #[error("cannot create the demo directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A demo file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The certificate could not be generated.
    #[error("cannot generate the demo certificate: {0}")]
    Certificate(String),
    /// The demo servers' TLS configuration was refused.
    #[error("cannot set up TLS for the demo servers: {0}")]
    Tls(rustls::Error),
    /// A demo server could not listen.
    #[error("cannot start demo server {index} on 127.0.0.1: {source}")]
    DemoServer {
        /// 1-based server number.
        index: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The generated configuration was rejected (a bug in the demo or in the config checks).
    #[error("the demo configuration was rejected (a bug in `ringmaster demo`):\n{0}")]
    Config(ConfigError),
    /// The proxy could not run.
    #[error("cannot serve: {0}")]
    Runtime(RuntimeError),
}

/// Runs the demo on 127.0.0.1:`port` until SIGINT/SIGTERM (see the module documentation).
/// `log_level` only appears in the `ringmaster ep-check` line printed for the user; logging is set
/// up by the caller.
pub fn run(port: u16, log_level: &str) -> Result<(), DemoError> {
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    ensure_port_free(port)?;
    let dir = DemoDir::create()?;
    let files = write_certificate(dir.path())?;
    let server_tls = demo_server_config(&files)?;
    let mut servers = Vec::with_capacity(DEMO_SERVERS);
    for index in 1..=DEMO_SERVERS {
        servers.push(start_demo_server(index, server_tls.clone())?);
    }
    let config_path = dir.path().join("ringmaster.toml");
    write_file(
        &config_path,
        demo_config(listen, &files, &servers).as_bytes(),
    )?;
    let config = crate::config::load(&config_path).map_err(DemoError::Config)?;
    let report = crate::ep_check::run(&config);
    print!(
        "{}",
        banner(
            listen,
            dir.path(),
            &config_path,
            &files,
            &servers,
            &report.render(),
            log_level
        )
    );
    let _ = io::stdout().flush();

    crate::runtime::run(config).map_err(|e| match e {
        RuntimeError::Worker { ref message, .. } if message.contains("in use") => {
            DemoError::PortInUse {
                port,
                holder: listener_on(port),
            }
        }
        other => DemoError::Runtime(other),
    })
}

/// A TOML string literal (quoted and escaped) for a path.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// The demo configuration: one reencrypt service with Extended Protection over the demo servers,
/// verifying them against the demo certificate itself.
fn demo_config(listen: SocketAddr, files: &CertFiles, servers: &[SocketAddr]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by `ringmaster demo`; removed when the demo stops."
    );
    let _ = writeln!(text, "[global]\ndrain_timeout = \"{DEMO_DRAIN_TIMEOUT}\"\n");
    let _ = writeln!(
        text,
        "[[service]]\nname = \"demo\"\nlisten = \"{listen}\"\nmode = \"reencrypt\""
    );
    let _ = writeln!(
        text,
        "certificate = {}\nkey = {}",
        toml_string(&files.cert_pem),
        toml_string(&files.key_pem)
    );
    let _ = writeln!(text, "extended_protection = true\n");
    let _ = writeln!(
        text,
        "[service.backend_tls]\nverify = \"ca\"\nca = {}\nsni = \"localhost\"",
        toml_string(&files.cert_pem)
    );
    for server in servers {
        let _ = writeln!(text, "\n[[service.server]]\naddress = \"{server}\"");
    }
    text
}

/// What the demo prints before serving.
fn banner(
    listen: SocketAddr,
    dir: &Path,
    config: &Path,
    files: &CertFiles,
    servers: &[SocketAddr],
    ep_report: &str,
    log_level: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ringmaster demo: a re-encrypt service with Extended Protection, all in this process.\n"
    );
    let _ = writeln!(
        out,
        "  files        {}  (cert.pem, key.pem, ringmaster.toml; removed at exit)",
        dir.display()
    );
    let _ = writeln!(
        out,
        "  certificate  self-signed for {}",
        DEMO_NAMES.join(", ")
    );
    if let Ok(hash) = tls_server_end_point(files.cert_der.as_ref()) {
        let _ = writeln!(out, "               tls-server-end-point {hash}");
    }
    let _ = writeln!(
        out,
        "  service      demo on https://{listen}  (mode reencrypt, extended_protection = true)"
    );
    for (i, server) in servers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  server {}     https://{server}  (demo HTTPS server, same certificate)",
            i + 1
        );
    }
    let _ = writeln!(
        out,
        "\nExtended Protection: the service and each server must present the same certificate."
    );
    for line in ep_report.lines() {
        let indent = if line.is_empty() { "" } else { "  " };
        let _ = writeln!(out, "{indent}{line}");
    }
    let _ = writeln!(out, "\nTry:");
    let _ = writeln!(out, "  curl -k https://{listen}/");
    let _ = writeln!(
        out,
        "  curl --cacert {} https://localhost:{}/",
        files.cert_pem.display(),
        listen.port()
    );
    let _ = writeln!(
        out,
        "  ringmaster --log-level {log_level} ep-check -c {}",
        config.display()
    );
    let _ = writeln!(
        out,
        "Each answer names the demo server that gave it, and the server prints a line below."
    );
    let _ = writeln!(out, "Ctrl-C to stop.\n");
    out
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;

    use super::*;

    #[test]
    fn the_demo_config_is_valid_toml_with_escaped_paths() {
        let files = CertFiles {
            cert_pem: PathBuf::from("/tmp/a \"b\"/cert.pem"),
            key_pem: PathBuf::from("/tmp/a \"b\"/key.pem"),
            cert_der: CertificateDer::from(vec![0u8]),
            key_der: Vec::new(),
        };
        let servers = [
            "127.0.0.1:1001".parse().expect("addr"),
            "127.0.0.1:1002".parse().expect("addr"),
        ];
        let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEMO_PORT);
        let text = demo_config(listen, &files, &servers);
        let value: toml::Table = toml::from_str(&text).expect(&text);
        let service = &value["service"].as_array().expect("services")[0];
        assert_eq!(
            service["certificate"].as_str(),
            Some("/tmp/a \"b\"/cert.pem")
        );
        assert_eq!(service["extended_protection"].as_bool(), Some(true));
        assert_eq!(service["server"].as_array().expect("servers").len(), 2);
        assert_eq!(service["backend_tls"]["verify"].as_str(), Some("ca"));
        assert_eq!(service["listen"].as_str(), Some("127.0.0.1:8443"));
    }

    /// Without `--port`, the banner's lines to try name 127.0.0.1:8443, as the README says.
    #[test]
    fn demo_banner_names_the_default_port() {
        let files = CertFiles {
            cert_pem: PathBuf::from("/tmp/d/cert.pem"),
            key_pem: PathBuf::from("/tmp/d/key.pem"),
            cert_der: CertificateDer::from(vec![0u8]),
            key_der: Vec::new(),
        };
        let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEMO_PORT);
        let text = banner(
            listen,
            Path::new("/tmp/d"),
            Path::new("/tmp/d/r.toml"),
            &files,
            &[],
            "",
            "info",
        );
        assert!(text.contains("curl -k https://127.0.0.1:8443/"), "{text}");
        assert!(text.contains("https://localhost:8443/"), "{text}");
    }
}
