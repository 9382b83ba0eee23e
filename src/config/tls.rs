//! Checks for the TLS keys of a service: `certificate`/`key`, `[[service.sni_certificate]]`,
//! `[service.backend_tls]` and `extended_protection`, and which modes they belong to.
//!
//! Certificates and keys are loaded here, so a missing file, a key that does not match its
//! certificate or an empty CA file is a configuration error (exit 78), not a runtime surprise.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use toml::{Spanned, Value};

use super::file::{RawBackendTls, RawService};
use super::validate::Checker;
use super::{BackendTls, FrontTls, Mode};
use crate::tls::certs::{load_cert, load_roots, CertError, TlsCert};
use crate::tls::client::{system_roots, Verify};

/// What the TLS keys of one service amount to.
pub(super) type ServiceTls = (Option<FrontTls>, Option<BackendTls>, bool);

const EP_OFFLOAD_FIX: &str = "Extended Protection binds each login to a hash of the certificate the client saw, and with \
     offload the server never sees it, so every protected login fails. Use mode = \"reencrypt\" with \
     the same certificate on ringmaster and on every server, or mode = \"passthrough\" (with \
     source-IP persistence), or set extended_protection = false";

impl Checker<'_> {
    /// The TLS part of a service in `mode`; `None` after reporting a problem.
    pub(super) fn service_tls(
        &mut self,
        s: &RawService,
        mode: Mode,
        header: usize,
        label: &str,
    ) -> Option<ServiceTls> {
        let ep = match &s.extended_protection {
            Some(v) => self.boolean("extended_protection", v)?,
            None => false,
        };
        if mode == Mode::Passthrough {
            let mut ok = true;
            for (key, v) in [("certificate", &s.certificate), ("key", &s.key)] {
                if let Some(v) = v {
                    self.report(
                        v,
                        format!("`{key}` is only used by offload and reencrypt; passthrough leaves TLS to the servers"),
                        "remove it, or set mode = \"offload\" or \"reencrypt\"",
                    );
                    ok = false;
                }
            }
            if s.backend_tls.is_some() || s.sni_certificate.is_some() {
                self.report_at(
                    header,
                    format!("{label} is passthrough but has [service.backend_tls] or [[service.sni_certificate]]"),
                    "remove those tables, or set mode = \"reencrypt\"",
                );
                ok = false;
            }
            return ok.then_some((None, None, ep));
        }
        if mode == Mode::Offload && ep {
            if let Some(v) = &s.extended_protection {
                self.report(
                    v,
                    "extended_protection cannot work with mode = \"offload\"",
                    EP_OFFLOAD_FIX,
                );
            }
            return None;
        }
        let front = self.front_tls(s, header, label);
        let backend = match (mode, &s.backend_tls) {
            (Mode::Reencrypt, raw) => self.backend_tls(raw.as_ref()).map(Some),
            (_, Some(raw)) => {
                self.report_at(
                    raw.span().start,
                    format!("[service.backend_tls] is only used by reencrypt; {label} is offload, which talks plain TCP to its servers"),
                    "remove [service.backend_tls], or set mode = \"reencrypt\"",
                );
                None
            }
            (_, None) => Some(None),
        };
        Some((Some(front?), backend?, ep))
    }

    fn front_tls(&mut self, s: &RawService, header: usize, label: &str) -> Option<FrontTls> {
        let default = match (&s.certificate, &s.key) {
            (Some(c), Some(k)) => self.certificate_pair(c, k),
            _ => {
                self.report_at(
                    header,
                    format!("{label} terminates TLS but is missing `certificate` or `key`"),
                    "add certificate = \"certs/service.pem\" (PEM chain, end-entity first) and key = \"certs/service.key\"",
                );
                None
            }
        };
        let mut certificates = vec![default];
        for extra in s.sni_certificate.as_deref().unwrap_or(&[]) {
            let e = extra.get_ref();
            let cert = match (&e.certificate, &e.key) {
                (Some(c), Some(k)) => self.certificate_pair(c, k),
                _ => {
                    self.report_at(
                        extra.span().start,
                        "[[service.sni_certificate]] needs both `certificate` and `key`",
                        "add certificate = \"...pem\" and key = \"...key\"",
                    );
                    None
                }
            };
            certificates.push(cert);
        }
        let certificates: Option<Vec<TlsCert>> = certificates.into_iter().collect();
        Some(FrontTls {
            certificates: certificates?,
        })
    }

    /// Loads one certificate/key pair, reporting at the key that names the bad file.
    fn certificate_pair(&mut self, cert: &Spanned<Value>, key: &Spanned<Value>) -> Option<TlsCert> {
        let cert_path = self.path_value("certificate", cert)?;
        let key_path = self.path_value("key", key)?;
        match load_cert(&cert_path, &key_path) {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                let at = match &e {
                    CertError::File { path, .. } if *path == cert_path => cert,
                    _ => key,
                };
                let fix = match &e {
                    CertError::Mismatch { .. } => format!(
                        "use the key generated with this certificate; compare `openssl x509 -noout -pubkey -in {}` with `openssl pkey -pubout -in {}`",
                        cert_path.display(),
                        key_path.display()
                    ),
                    CertError::Key { .. } => "use an RSA, ECDSA (P-256/P-384) or Ed25519 key in PEM (PKCS#8, PKCS#1 or SEC1)".to_string(),
                    _ => "check the path (relative paths start at the config file's directory) and that it is PEM".to_string(),
                };
                self.report(at, e.to_string(), fix);
                None
            }
        }
    }

    fn backend_tls(&mut self, raw: Option<&Spanned<RawBackendTls>>) -> Option<BackendTls> {
        let b = raw.map(Spanned::get_ref);
        let sni = self.server_name(b.and_then(|b| b.sni.as_ref()));
        let verify = self.verify(
            b.and_then(|b| b.verify.as_ref()),
            b.and_then(|b| b.ca.as_ref()),
            "system",
            "[service.backend_tls]",
        );
        let (verify, ca) = verify?;
        Some(BackendTls {
            verify,
            ca,
            sni: sni?,
        })
    }

    /// An optional `sni` value: a DNS name or IP address.
    pub(super) fn server_name(
        &mut self,
        v: Option<&Spanned<Value>>,
    ) -> Option<Option<ServerName<'static>>> {
        let Some(v) = v else { return Some(None) };
        let text = self.string("sni", v, "mail.example.com")?;
        match ServerName::try_from(text.to_owned()) {
            Ok(name) => Some(Some(name)),
            Err(_) => {
                self.report(
                    v,
                    "sni is not a valid DNS name or IP address",
                    "e.g. sni = \"mail.example.com\"",
                );
                None
            }
        }
    }

    /// `verify` (default `default`) and `ca` of the table named `table`: how servers' certificates
    /// are checked, with the CA file when there is one.
    pub(super) fn verify(
        &mut self,
        verify_v: Option<&Spanned<Value>>,
        ca_v: Option<&Spanned<Value>>,
        default: &str,
        table: &str,
    ) -> Option<(Verify, Option<PathBuf>)> {
        let verify_text = match verify_v {
            Some(v) => self.string("verify", v, "ca")?.to_owned(),
            None => default.to_owned(),
        };
        let ca = match ca_v {
            Some(v) => Some((self.path_value("ca", v)?, v)),
            None => None,
        };
        let verify = match (verify_text.as_str(), &ca) {
            ("ca", Some((path, v))) => match load_roots(path) {
                Ok(roots) => Some(Verify::Ca(Arc::new(roots))),
                Err(e) => {
                    self.report(v, e.to_string(), "point ca at a PEM file with the CA certificate(s) that signed the servers' certificates, or the servers' own certificate");
                    None
                }
            },
            ("ca", None) => {
                let at = verify_v.map_or(0, |v| v.span().start);
                self.report_at(
                    at,
                    "verify = \"ca\" needs a `ca` file",
                    format!("add ca = \"certs/ca.pem\" to {table}"),
                );
                None
            }
            (_, Some((_, v))) => {
                self.report(
                    v,
                    format!("`ca` is only used with verify = \"ca\" (verify is \"{verify_text}\")"),
                    "set verify = \"ca\", or remove ca",
                );
                None
            }
            ("system", None) => match system_roots() {
                Ok(roots) => Some(Verify::System(Arc::new(roots))),
                Err(e) => {
                    let at = verify_v.map_or(0, |v| v.span().start);
                    self.report_at(at, e, "install the ca-certificates package, or use verify = \"ca\" with a ca file");
                    None
                }
            },
            ("none", None) => Some(Verify::None),
            (other, None) => {
                if let Some(v) = verify_v {
                    self.report(
                        v,
                        format!("unknown verify \"{other}\""),
                        "use \"ca\" (with ca = FILE), \"system\" or \"none\" (no certificate check; logged as a warning)",
                    );
                }
                None
            }
        };
        Some((verify?, ca.map(|(p, _)| p)))
    }

    /// A file path, relative to the config file's directory unless absolute.
    fn path_value(&mut self, key: &str, v: &Spanned<Value>) -> Option<PathBuf> {
        let text = self.string(key, v, "certs/service.pem")?;
        let path = PathBuf::from(text);
        Some(if path.is_absolute() {
            path
        } else {
            self.dir.join(path)
        })
    }

    /// The boolean in `v`.
    fn boolean(&mut self, key: &str, v: &Spanned<Value>) -> Option<bool> {
        if let Value::Boolean(b) = v.get_ref() {
            return Some(*b);
        }
        self.report(
            v,
            format!("{key} must be true or false"),
            format!("e.g. {key} = true (no quotes)"),
        );
        None
    }
}
