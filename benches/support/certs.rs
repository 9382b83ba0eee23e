//! Certificates for the TLS benches: RSA-2048 from `openssl`, ECDSA P-256 from rcgen, both
//! loaded by ringmaster's own PEM loader. Included by the benches with `#[path]`.

use std::path::Path;
use std::process::Command;

use ringmaster::tls::certs::{load_cert, TlsCert};

/// The name every bench certificate is for.
pub const NAME: &str = "bench.test";

/// An RSA-2048 certificate made by `openssl` (rcgen's ring backend cannot make RSA keys); `None`
/// (said on stderr) when openssl cannot make one.
pub fn rsa_cert(dir: &Path) -> Option<TlsCert> {
    let (cert, key) = (dir.join("rsa.pem"), dir.join("rsa.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={NAME}")])
        .args(["-addext", &format!("subjectAltName=DNS:{NAME}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Some(load_cert(&cert, &key).expect("load RSA certificate")),
        _ => {
            eprintln!("openssl could not make an RSA-2048 certificate; RSA cases use ECDSA or are skipped");
            None
        }
    }
}

/// An ECDSA P-256 certificate from rcgen.
pub fn ecdsa_cert(dir: &Path) -> TlsCert {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let (cert_path, key_path) = (dir.join("ecdsa.pem"), dir.join("ecdsa.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    load_cert(&cert_path, &key_path).expect("load ECDSA certificate")
}
