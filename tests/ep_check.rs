//! `ringmaster ep-check -c FILE` against real TLS servers (rustls in std threads), with
//! certificates generated here by rcgen: a test CA, two certificates it issued for the same name
//! (the "renewed certificate" of the Extended Protection story) and one self-signed stranger.
//!
//! What it proves: ep-check handshakes with each server, hashes the certificate that server
//! presents and compares it with the service's own certificate; same certificate → `match`, exit 0;
//! a renewed (different) certificate → `MISMATCH` with both full hashes, exit 1; a certificate that
//! the service's `[service.backend_tls]` refuses is still hashed and reported `untrusted`; a dead
//! server is `unreachable`; a passthrough service is reported as having nothing to compare.
//!
//! How it would fail: the expected hashes are computed here with sha2 over each certificate's DER,
//! independently of ringmaster's channel-binding code, so hashing the wrong bytes (PEM, the CA, the
//! chain) fails the mismatch test; a verifier that aborts before capturing the certificate turns
//! `untrusted` into `unreachable`; an exit status that ignores verdicts fails every non-zero check.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Longest an `ep-check` run may take: each probe is bounded by its connect timeout (1s here) and
/// a 5s handshake timeout, and the probes run in parallel.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Read/write timeout of the fake servers' sockets.
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The name every test certificate is issued for.
const NAME: &str = "mail.ep.test";

/// A certificate with its key, as PEM files and DER.
struct Leaf {
    cert_pem: PathBuf,
    key_pem: PathBuf,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Leaf {
    /// `tls-server-end-point` as ringmaster prints it: these certificates are ECDSA P-256 with
    /// SHA-256 signatures, so the hash is SHA-256 of the DER (RFC 5929 §4.1).
    fn hash(&self) -> String {
        let digest = Sha256::digest(self.der.as_ref());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// A test CA, and the directory its files go to.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    ca_pem: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ep-check test CA");
        let ca = params.self_signed(&ca_key).expect("CA cert");
        let ca_pem = dir.path().join("ca.pem");
        fs::write(&ca_pem, ca.pem()).expect("write ca.pem");
        Pki {
            dir,
            ca,
            ca_key,
            ca_pem,
        }
    }

    /// A certificate for [`NAME`] issued by the CA (`signed == true`) or self-signed.
    fn leaf(&self, file: &str, signed: bool) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![NAME.to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, NAME);
        let cert = if signed {
            params
                .signed_by(&key, &self.ca, &self.ca_key)
                .expect("issue")
        } else {
            params.self_signed(&key).expect("self-sign")
        };
        let cert_pem = self.dir.path().join(format!("{file}.pem"));
        let key_pem = self.dir.path().join(format!("{file}.key"));
        fs::write(&cert_pem, cert.pem()).expect("write cert");
        fs::write(&key_pem, key.serialize_pem()).expect("write key");
        Leaf {
            cert_pem,
            key_pem,
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A self-signed certificate for [`NAME`] marked as a CA (`CA:TRUE`), as `openssl req -x509`
    /// makes by default.
    fn ca_flagged_leaf(&self, file: &str) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![NAME.to_string()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-sign");
        let cert_pem = self.dir.path().join(format!("{file}.pem"));
        let key_pem = self.dir.path().join(format!("{file}.key"));
        fs::write(&cert_pem, cert.pem()).expect("write cert");
        fs::write(&key_pem, key.serialize_pem()).expect("write key");
        Leaf {
            cert_pem,
            key_pem,
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// Writes a config with one reencrypt service presenting `front`, verifying its servers
    /// against the CA, with `extended_protection = true`.
    fn reencrypt_config(&self, front: &Leaf, servers: &[SocketAddr]) -> PathBuf {
        let mut text = format!(
            "[[service]]\nname = \"exchange\"\nlisten = \"127.0.0.1:{}\"\nmode = \"reencrypt\"\n\
             certificate = {}\nkey = {}\nextended_protection = true\nconnect_timeout = \"1s\"\n\n\
             [service.backend_tls]\nverify = \"ca\"\nca = {}\n",
            unused_port(),
            toml_path(&front.cert_pem),
            toml_path(&front.key_pem),
            toml_path(&self.ca_pem),
        );
        for server in servers {
            text.push_str(&format!("\n[[service.server]]\naddress = \"{server}\"\n"));
        }
        let path = self.dir.path().join("ringmaster.toml");
        fs::write(&path, text).expect("write config");
        path
    }
}

/// A path as a TOML string literal.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// A loopback port nothing listens on (bound, read, released).
fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A TLS server on an ephemeral loopback port presenting `leaf`: it completes handshakes and
/// reads until the client closes. Its threads are detached; they end with the test process.
fn tls_server(leaf: &Leaf) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
    let config = Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der.clone()], key)
            .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind server");
    let addr = listener.local_addr().expect("server addr");
    thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            thread::spawn(move || serve(tcp, config));
        }
    });
    addr
}

fn serve(tcp: TcpStream, config: Arc<ServerConfig>) {
    let _ = tcp.set_read_timeout(Some(SERVER_IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(SERVER_IO_TIMEOUT));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut stream = StreamOwned::new(conn, tcp);
    let mut buf = [0u8; 1024];
    // Reading drives the handshake; it ends at close_notify, EOF, an alert or the timeout.
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    let _ = stream.flush();
}

/// What one `ringmaster ep-check` run printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn dump(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `ringmaster ep-check -c config`, killing it if it runs past [`RUN_TIMEOUT`].
fn ep_check(config: &Path) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["ep-check", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringmaster ep-check");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => {
            let output = output.expect("wait for ep-check");
            Run {
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            // SAFETY: kill(2) on the PID of our own child, which has not been reaped (the waiting
            // thread has not returned).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("ringmaster ep-check did not finish within {RUN_TIMEOUT:?}");
        }
    }
}

/// The table row (line) of the server at `addr`.
fn row(run: &Run, addr: SocketAddr) -> &str {
    let needle = format!("  {addr}  ");
    run.stdout
        .lines()
        .find(|l| l.starts_with("exchange") && l.contains(&needle))
        .unwrap_or_else(|| panic!("no row for {addr}\n{}", run.dump()))
}

#[test]
fn the_same_certificate_on_service_and_server_matches_and_exits_0() {
    let pki = Pki::new();
    let cert = pki.leaf("mail", true);
    let server = tls_server(&cert);
    let run = ep_check(&pki.reencrypt_config(&cert, &[server]));
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(row(&run, server).contains("  match  "), "{}", run.dump());
    assert!(!run.stdout.contains("MISMATCH"), "{}", run.dump());
}

#[test]
fn a_renewed_certificate_on_the_server_is_a_mismatch_with_both_full_hashes() {
    let pki = Pki::new();
    let service_cert = pki.leaf("mail", true);
    let renewed = pki.leaf("mail-renewed", true);
    let good = tls_server(&service_cert);
    let bad = tls_server(&renewed);
    let run = ep_check(&pki.reencrypt_config(&service_cert, &[good, bad]));
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(row(&run, good).contains("  match  "), "{}", run.dump());
    let bad_row = row(&run, bad);
    assert!(bad_row.contains("MISMATCH"), "{}", run.dump());
    assert!(
        bad_row.contains("install the service's certificate"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains(&service_cert.hash()),
        "service hash missing\n{}",
        run.dump()
    );
    assert!(
        run.stdout.contains(&renewed.hash()),
        "server hash missing\n{}",
        run.dump()
    );
}

#[test]
fn a_certificate_the_service_does_not_trust_is_still_hashed_and_reported_untrusted() {
    let pki = Pki::new();
    let service_cert = pki.leaf("mail", true);
    let stranger = pki.leaf("stranger", false);
    let server = tls_server(&stranger);
    let run = ep_check(&pki.reencrypt_config(&service_cert, &[server]));
    assert_ne!(run.code, Some(0), "{}", run.dump());
    let line = row(&run, server);
    assert!(line.contains("untrusted: "), "{}", run.dump());
    assert!(
        line.contains("set ca"),
        "the fix should name `ca`\n{}",
        run.dump()
    );
    assert!(
        run.stdout.contains(&stranger.hash()),
        "the untrusted certificate was not hashed\n{}",
        run.dump()
    );
}

#[test]
fn a_self_signed_ca_flagged_certificate_listed_in_ca_is_pinned_and_matches() {
    // `openssl req -x509` certificates carry CA:TRUE, which WebPKI refuses as a server
    // certificate; listing the certificate itself in `ca` pins it, as re-encrypt does too.
    // Fails if ep-check and the runtime disagree on what `verify = "ca"` trusts.
    let pki = Pki::new();
    let cert = pki.ca_flagged_leaf("openssl-style");
    let server = tls_server(&cert);
    let text = fs::read_to_string(pki.reencrypt_config(&cert, &[server])).expect("read config");
    let path = pki.dir.path().join("ca-flagged.toml");
    fs::write(
        &path,
        text.replace(&toml_path(&pki.ca_pem), &toml_path(&cert.cert_pem)),
    )
    .expect("write");
    let run = ep_check(&path);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(row(&run, server).contains("match"), "{}", run.dump());
}

#[test]
fn a_dead_server_is_unreachable_and_fails_the_check() {
    let pki = Pki::new();
    let cert = pki.leaf("mail", true);
    let dead: SocketAddr = format!("127.0.0.1:{}", unused_port())
        .parse()
        .expect("addr");
    let run = ep_check(&pki.reencrypt_config(&cert, &[dead]));
    assert_ne!(run.code, Some(0), "{}", run.dump());
    let line = row(&run, dead);
    assert!(line.contains("unreachable: "), "{}", run.dump());
    assert!(line.contains("check the server is up"), "{}", run.dump());
}

#[test]
fn passthrough_and_services_without_extended_protection_need_no_comparison() {
    let pki = Pki::new();
    let dead = format!("127.0.0.1:{}", unused_port());
    let text = format!(
        "[[service]]\nname = \"owa\"\nlisten = \"127.0.0.1:{}\"\nmode = \"passthrough\"\nextended_protection = true\n\
         [[service.server]]\naddress = \"{dead}\"\n\n\
         [[service]]\nname = \"plain\"\nlisten = \"127.0.0.1:{}\"\nmode = \"passthrough\"\n\
         [[service.server]]\naddress = \"{dead}\"\n",
        unused_port(),
        unused_port(),
    );
    let path = pki.dir.path().join("passthrough.toml");
    fs::write(&path, text).expect("write config");
    let run = ep_check(&path);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(
        run.stdout
            .contains("owa: passthrough: EP preserved, nothing to compare"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains("plain"),
        "the unchecked service should be named\n{}",
        run.dump()
    );

    let none = pki.dir.path().join("none.toml");
    fs::write(
        &none,
        format!(
            "[[service]]\nname = \"plain\"\nlisten = \"127.0.0.1:{}\"\nmode = \"passthrough\"\n\
             [[service.server]]\naddress = \"{dead}\"\n",
            unused_port()
        ),
    )
    .expect("write config");
    let run = ep_check(&none);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(run.stdout.contains("nothing to check"), "{}", run.dump());
}

/// The library entry point the runtime uses at start-up: `probe` returns the server's DER and a
/// verification error without running the binary.
#[test]
fn probe_returns_the_presented_certificate_even_when_verification_fails() {
    let pki = Pki::new();
    let service_cert = pki.leaf("mail", true);
    let stranger = pki.leaf("stranger", false);
    let trusted = tls_server(&service_cert);
    let untrusted = tls_server(&stranger);
    let path = pki.reencrypt_config(&service_cert, &[trusted, untrusted]);
    let config = ringmaster::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let service = &config.services[0];

    let ok = ringmaster::ep_check::probe(service, 0).expect("probe trusted server");
    assert_eq!(ok.certificate, service_cert.der);
    assert_eq!(ok.verify_error, None);
    assert_eq!(
        ok.sni, NAME,
        "without backend_tls.sni the service certificate's name is sent"
    );
    assert_eq!(ok.server_hash.to_string(), service_cert.hash());

    let refused = ringmaster::ep_check::probe(service, 1).expect("probe untrusted server");
    assert_eq!(refused.certificate, stranger.der);
    assert!(refused.verify_error.is_some());
    assert!(
        ringmaster::ep_check::probe(service, 2).is_err(),
        "no server #2"
    );
}
