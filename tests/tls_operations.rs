//! Operations with TLS services: the access log records the client's TLS parameters, and a
//! reload picks up a renewed certificate for new connections while open ones carry on.

mod common;
mod tls_support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::*;
use tls_support::*;

/// `tls_config` with `extra` added to `[global]`.
fn with_global(config: String, extra: &str) -> String {
    config.replacen("[global]\n", &format!("[global]\n{extra}\n"), 1)
}

#[test]
fn access_log_records_the_clients_tls_parameters() {
    let pki = Pki::new();
    let backend = Backend::echo();
    let service = TlsService::offload("secure", &pki.front_files, &[backend.addr()]);
    let log = pki.dir().join("access.log");
    let config = with_global(
        tls_config(1, &[service]),
        &format!("access_log = {{ path = \"{}\" }}", log.display()),
    );
    let proxy = Proxy::start(&config);
    let client = ca_client(&pki).build();
    let mut s = tls_connect(proxy.addr(), &client, FRONT_NAME).expect("TLS handshake");
    assert_eq!(
        tls_round_trip(&mut s, b"hello\n").expect("echo"),
        b"hello\n"
    );
    s.conn.send_close_notify();
    let _ = s.flush();
    drop(s);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("bytes_in=6 ")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line for the TLS client in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for want in [
        "service=secure",
        "mode=offload",
        "tls_version=TLSv1.3",
        "cipher=TLS13_",
        &format!("sni={FRONT_NAME}"),
        "bytes_out=6",
        &format!("server={}", backend.addr()),
    ] {
        assert!(line.contains(want), "{want:?} missing in: {line}");
    }
    assert!(line.contains("end=client_close"), "{line}");
    // The readiness probe spoke no TLS: logged as the client's error.
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("end=client_error"), "{text}");
    drop(proxy);
}

#[test]
fn reload_picks_up_a_renewed_certificate() {
    let pki = Pki::new();
    let backend = Backend::echo();
    let service = TlsService::offload("secure", &pki.front_files, &[backend.addr()]);
    let proxy = Proxy::start(&tls_config(2, &[service]));
    let client = ca_client(&pki).build();
    let mut before = tls_connect(proxy.addr(), &client, FRONT_NAME).expect("handshake");
    let first = before.conn.peer_certificates().expect("certificate")[0].clone();

    // Renew: a new certificate and key at the same paths.
    let renewed = pki.ca.leaf(&[FRONT_NAME]);
    pki.files(&renewed, "front");
    proxy.signal(libc::SIGHUP);
    assert!(
        proxy.wait_log_count("reload applied", 1, Duration::from_secs(10)),
        "{}",
        proxy.logs_tail()
    );
    let mut after = tls_connect(proxy.addr(), &client, FRONT_NAME).expect("handshake");
    let second = after.conn.peer_certificates().expect("certificate")[0].clone();
    assert_ne!(
        first, second,
        "new connections still get the old certificate"
    );
    assert_eq!(second.as_ref(), renewed.der.as_ref());
    // Both connections work: the old one under the certificate it started with.
    assert_eq!(
        tls_round_trip(&mut before, b"old\n").expect("old connection"),
        b"old\n"
    );
    assert_eq!(
        tls_round_trip(&mut after, b"new\n").expect("new connection"),
        b"new\n"
    );
}
