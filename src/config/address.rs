//! Socket addresses in the config: `listen` (an IP literal and a port) and server `address`
//! (an IP literal, `[v6]:port`, or `host:port` resolved once, here, at load time — never on
//! the connection path).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Why an address was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

fn reject(message: impl Into<String>, fix: impl Into<String>) -> Rejection {
    Rejection {
        message: message.into(),
        fix: fix.into(),
    }
}

/// An address split into its parts, before any lookup.
#[derive(Debug, PartialEq, Eq)]
enum Parsed<'a> {
    /// An IP literal with a port, possibly port 0.
    Literal(SocketAddr),
    /// A syntactically valid host name and a non-zero port.
    Host { host: &'a str, port: u16 },
}

/// `ip` with `port`, the way it is written in the config (`[v6]:port`).
fn with_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// Splits `text` into an IP literal or a host name, each with a port. `key` names the key in
/// messages; `example` is an address to show in fixes.
fn split<'a>(text: &'a str, key: &str, example: &str) -> Result<Parsed<'a>, Rejection> {
    if text.is_empty() {
        return Err(reject(
            format!("{key} is empty"),
            format!("write an address and a port, e.g. \"{example}\""),
        ));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Parsed::Literal(addr));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        let fix = match ip {
            IpAddr::V6(_) => format!(
                "write IPv6 addresses in brackets, then the port: \"{}\"",
                with_port(ip, 443)
            ),
            IpAddr::V4(_) => format!("add the port, e.g. \"{}\"", with_port(ip, 443)),
        };
        return Err(reject(format!("{key} {text:?} has no port"), fix));
    }
    if let Some(inner) = text.strip_prefix('[') {
        return Err(bracketed(inner, key, text));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(reject(
            format!("{key} {text:?} has no port"),
            format!("add the port, e.g. \"{text}:443\""),
        ));
    };
    if host.contains(':') {
        return Err(reject(
            format!("{key} {text:?} is not a valid address"),
            "write IPv6 addresses in brackets, then the port, e.g. \"[2001:db8::1]:443\"",
        ));
    }
    let port: u16 = match port.parse() {
        Ok(p) => p,
        Err(_) => {
            return Err(reject(
                format!("{key} {text:?} has an invalid port {port:?}"),
                "use a port number from 1 to 65535",
            ))
        }
    };
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(reject(
            format!("{key} {text:?}: {host:?} is not a valid IPv4 address"),
            format!("write four numbers from 0 to 255 separated by dots, e.g. \"{example}\""),
        ));
    }
    if !is_host_name(host) {
        return Err(reject(
            format!("{key} {text:?} is neither an IP address nor a host name"),
            format!("write an IP address or a host name, then the port, e.g. \"{example}\""),
        ));
    }
    Ok(Parsed::Host { host, port })
}

/// The rejection for `[...` that did not parse as `[v6]:port`; `inner` follows the `[`.
fn bracketed(inner: &str, key: &str, text: &str) -> Rejection {
    let Some((ip, after)) = inner.split_once(']') else {
        return reject(
            format!("{key} {text:?} is missing its closing ']'"),
            "write \"[IPv6]:port\", e.g. \"[::1]:443\"",
        );
    };
    let Ok(ip) = ip.parse::<Ipv6Addr>() else {
        return reject(
            format!("{key} {text:?}: {ip:?} is not a valid IPv6 address"),
            "put only an IPv6 address in brackets, e.g. \"[2001:db8::1]:443\"",
        );
    };
    match after.strip_prefix(':') {
        None if after.is_empty() => reject(
            format!("{key} {text:?} has no port"),
            format!("add the port, e.g. \"{}\"", with_port(IpAddr::V6(ip), 443)),
        ),
        Some(port) if !port.is_empty() => reject(
            format!("{key} {text:?} has an invalid port {port:?}"),
            "use a port number from 1 to 65535",
        ),
        _ => reject(
            format!("{key} {text:?} is not a valid address"),
            "write \"[IPv6]:port\", e.g. \"[::1]:443\"",
        ),
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and '-', not starting or ending
/// with '-', at most 63 characters each and 253 in all. A trailing dot is allowed.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A `listen` address: an IP literal and a port other than 0.
pub(super) fn listen_address(text: &str) -> Result<SocketAddr, Rejection> {
    match split(text, "listen address", "0.0.0.0:443")? {
        Parsed::Literal(addr) if addr.port() == 0 => Err(reject(
            "listen port 0 is not allowed: a virtual service needs a fixed port",
            format!("use the port clients connect to, e.g. \"{}\"", with_port(addr.ip(), 443)),
        )),
        Parsed::Literal(addr) => Ok(addr),
        Parsed::Host { host, port } => Err(reject(
            format!("listen address {text:?} is a host name; listen needs an IP address"),
            format!(
                "listen on an address of this machine, e.g. \"0.0.0.0:{port}\" (every IPv4 address) \
                 or \"[::]:{port}\" instead of {host:?}"
            ),
        )),
    }
}

/// A server `address`: an IP literal and a port, or a host name and a port, resolved now (with
/// `lookup`; else a stand-in, 192.0.2.1). A name with several addresses gives the first the
/// resolver returns (its RFC 6724 order).
pub(super) fn server_address(text: &str, lookup: bool) -> Result<SocketAddr, Rejection> {
    let port_zero = |example: String| {
        reject(
            "server port 0 is not allowed: ringmaster connects to a fixed port",
            format!("use the port the server listens on, e.g. \"{example}\""),
        )
    };
    match split(text, "server address", "10.0.0.11:443")? {
        Parsed::Literal(addr) if addr.port() == 0 => Err(port_zero(with_port(addr.ip(), 443))),
        Parsed::Literal(addr) => Ok(addr),
        Parsed::Host { host, port: 0 } => Err(port_zero(format!("{host}:443"))),
        Parsed::Host { port, .. } if !lookup => Ok(SocketAddr::from(([192, 0, 2, 1], port))),
        Parsed::Host { host, port } => resolve(host, port),
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, Rejection> {
    let fix = "check the spelling, or write the server's IP address; host names are resolved \
               once, when the configuration is loaded";
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => {
                tracing::debug!(host, %addr, "resolved server address");
                Ok(addr)
            }
            None => Err(reject(
                format!("host name {host:?} resolved to no address"),
                fix,
            )),
        },
        Err(e) => Err(reject(
            format!("host name {host:?} does not resolve ({e})"),
            fix,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listen_accepts_ip_literals() {
        assert_eq!(listen_address("0.0.0.0:443"), Ok(addr("0.0.0.0:443")));
        assert_eq!(listen_address("[::]:8443"), Ok(addr("[::]:8443")));
        assert_eq!(listen_address("127.0.0.1:1"), Ok(addr("127.0.0.1:1")));
    }

    #[test]
    fn listen_rejections_say_why() {
        let msg = |s: &str| listen_address(s).unwrap_err().message;
        assert!(msg("0.0.0.0:0").contains("a virtual service needs a fixed port"));
        assert!(msg("[::]:0").contains("port 0"));
        assert!(msg("localhost:443").contains("host name"));
        assert!(msg("10.0.0.1").contains("has no port"));
        assert!(msg("::1").contains("has no port"));
        assert!(listen_address("::1")
            .unwrap_err()
            .fix
            .contains("\"[::1]:443\""));
        assert!(msg("10.0.0.1:99999").contains("invalid port"));
        assert!(msg("10.0.0.1:https").contains("invalid port"));
        assert!(msg("10.0.0.300:443").contains("not a valid IPv4 address"));
        assert!(msg("").contains("empty"));
        assert!(msg("[::1]").contains("has no port"));
        assert!(msg("[::1]:").contains("not a valid address"));
        assert!(msg("[::1]:x").contains("invalid port"));
        assert!(msg("[::1").contains("closing"));
        assert!(msg("[nope]:1").contains("not a valid IPv6"));
        assert!(msg("a b:443").contains("neither"));
        assert!(msg("fe80::1:2:443x").contains("not a valid address"));
    }

    #[test]
    fn server_accepts_literals_and_resolves_names() {
        assert_eq!(
            server_address("10.0.0.11:443", true),
            Ok(addr("10.0.0.11:443"))
        );
        assert_eq!(
            server_address("[2001:db8::1]:443", true),
            Ok(addr("[2001:db8::1]:443"))
        );
        let local = server_address("localhost:8443", true).unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8443, "{local}");
        assert_eq!(
            server_address("backend.invalid:443", false),
            Ok(addr("192.0.2.1:443")),
            "offline, a name is not looked up"
        );
    }

    #[test]
    fn server_rejections_say_why() {
        let err = server_address("backend.invalid:443", true).unwrap_err();
        assert!(
            err.message.contains("\"backend.invalid\" does not resolve"),
            "{err:?}"
        );
        let err = server_address("10.0.0.11:0", true).unwrap_err();
        assert!(err.message.contains("port 0"), "{err:?}");
        assert!(err.fix.contains("\"10.0.0.11:443\""), "{err:?}");
        assert!(server_address("[::1]:0", true)
            .unwrap_err()
            .fix
            .contains("\"[::1]:443\""));
        assert!(server_address("backend.invalid:0", true)
            .unwrap_err()
            .message
            .contains("port 0"));
        assert!(server_address("backend", true)
            .unwrap_err()
            .fix
            .contains("\"backend:443\""));
        assert!(server_address("-bad-:443", true)
            .unwrap_err()
            .message
            .contains("neither"));
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("mail.example.com"));
        assert!(is_host_name("mail.example.com."));
        assert!(is_host_name("a-b"));
        assert!(!is_host_name(""));
        assert!(!is_host_name("a..b"));
        assert!(!is_host_name("-a"));
        assert!(!is_host_name("a_b"));
        assert!(!is_host_name(&"a".repeat(64)));
    }
}
