//! The bytes and names an `http`/`https` check sends, built once per server: the request (path
//! and `Host` checked so that nothing can be injected into it), the SNI, and the TLS client
//! configuration shared by a service's checkers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use super::{CheckKind, HealthError, HttpCheck, DEFAULT_EXPECT, USER_AGENT};

/// Port left out of a default `Host` header for `http`.
pub(super) const DEFAULT_HTTP_PORT: u16 = 80;
/// Port left out of a default `Host` header for `https`.
pub(super) const DEFAULT_HTTPS_PORT: u16 = 443;

/// The client configuration of an `https` check (`None` for the others): the service's
/// verification, TLS 1.2 and 1.3, no resumption so that every check is a full handshake that
/// shows the server's current certificate, no ALPN (HTTP/1.1 by default).
pub(super) fn tls_client(
    service: &str,
    check: &CheckKind,
) -> Result<Option<Arc<ClientConfig>>, HealthError> {
    let CheckKind::Https(http) = check else {
        return Ok(None);
    };
    let base = crate::tls::client::for_server(&http.verify).map_err(|e| HealthError::Tls {
        service: service.into(),
        message: e.to_string(),
    })?;
    let mut config = (*base).clone();
    config.resumption = Resumption::disabled();
    Ok(Some(Arc::new(config)))
}

/// Statuses that pass.
pub(super) fn expect(http: &HttpCheck) -> Vec<u16> {
    if http.expect.is_empty() {
        DEFAULT_EXPECT.to_vec()
    } else {
        http.expect.clone()
    }
}

/// The request bytes of an `http`/`https` check of the server at `address`.
pub(super) fn request(
    service: &str,
    http: &HttpCheck,
    address: SocketAddr,
    default_port: u16,
) -> Result<Vec<u8>, HealthError> {
    let refuse = |field, value: &str, why| HealthError::Request {
        service: service.into(),
        field,
        value: value.into(),
        why,
    };
    if !http.path.starts_with('/') {
        return Err(refuse("path", &http.path, "it must start with /"));
    }
    // Request-target and Host are visible ASCII only: a space or control byte would end them
    // early or inject a header.
    let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if !visible(&http.path) {
        return Err(refuse(
            "path",
            &http.path,
            "spaces and control characters are not allowed",
        ));
    }
    let host = match &http.host {
        Some(host) if host.is_empty() || !visible(host) => {
            return Err(refuse(
                "host",
                host,
                "it must be a non-empty name without spaces",
            ))
        }
        Some(host) => host.clone(),
        None => default_host(address, default_port),
    };
    Ok(format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: {USER_AGENT}\r\n\r\n",
        http.path
    )
    .into_bytes())
}

/// `Host` for a server without a configured one: its IP (`[v6]`), and `:port` unless default.
fn default_host(address: SocketAddr, default_port: u16) -> String {
    let ip = match address.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    if address.port() == default_port {
        ip
    } else {
        format!("{ip}:{}", address.port())
    }
}

/// SNI of an `https` check: `sni`, else `host` without a port if it is a valid name, else the
/// server's IP address.
pub(super) fn sni(http: &HttpCheck, address: SocketAddr) -> ServerName<'static> {
    if let Some(sni) = &http.sni {
        return sni.clone();
    }
    http.host
        .as_deref()
        .map(without_port)
        .and_then(|host| ServerName::try_from(host.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()))
}

/// `name:443` → `name`, `[::1]:443` → `::1`, anything else unchanged.
fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(ip, _)| ip);
    }
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::client::Verify;

    fn http_check(path: &str, host: Option<&str>) -> HttpCheck {
        HttpCheck {
            path: path.into(),
            host: host.map(String::from),
            expect: vec![],
            sni: None,
            verify: Verify::None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn request_bytes() {
        let req = request(
            "svc",
            &http_check("/owa/healthcheck.htm", None),
            addr("10.0.0.11:443"),
            443,
        )
        .expect("request");
        assert_eq!(
            req,
            b"GET /owa/healthcheck.htm HTTP/1.1\r\nHost: 10.0.0.11\r\nConnection: close\r\nUser-Agent: ringmaster-health\r\n\r\n"
        );
        let req = request(
            "svc",
            &http_check("/", Some("mail.example.com")),
            addr("[::1]:8080"),
            80,
        )
        .expect("request");
        assert!(req.starts_with(b"GET / HTTP/1.1\r\nHost: mail.example.com\r\n"));
        assert_eq!(default_host(addr("[::1]:8080"), 80), "[::1]:8080");
        assert_eq!(default_host(addr("10.0.0.1:80"), 80), "10.0.0.1");
    }

    #[test]
    fn request_refuses_injection() {
        for (path, host) in [
            ("/a b", None),
            ("/x\r\nEvil: 1", None),
            ("health", None),
            ("/", Some("a\r\nb")),
            ("/", Some("")),
        ] {
            let check = http_check(path, host);
            let e = request("svc", &check, addr("10.0.0.1:80"), 80);
            assert!(e.is_err(), "{path:?} {host:?}");
        }
    }

    #[test]
    fn sni_choice() {
        let at = addr("10.0.0.11:443");
        assert_eq!(
            sni(&http_check("/", Some("mail.example.com:443")), at),
            ServerName::try_from("mail.example.com").expect("name")
        );
        assert_eq!(
            sni(&http_check("/", None), at),
            ServerName::IpAddress(at.ip().into())
        );
        let mut explicit = http_check("/", Some("other.example.com"));
        explicit.sni = Some(ServerName::try_from("mail.example.com").expect("name"));
        assert_eq!(
            sni(&explicit, at),
            ServerName::try_from("mail.example.com").expect("name")
        );
        assert_eq!(without_port("[::1]:443"), "::1");
        assert_eq!(without_port("::1"), "::1");
        assert_eq!(without_port("name:"), "name:");
    }

    #[test]
    fn empty_expect_means_200() {
        assert_eq!(expect(&http_check("/", None)), vec![200]);
    }
}
