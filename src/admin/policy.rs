//! Who may drive the admin API: the checks a request passes as soon as its headers are read,
//! before its body is read and before any route runs.
//!
//! The threat is a web page open in a browser on the same host. A page can make the browser send
//! requests to `127.0.0.1:9090` — simple `POST`s without asking first, and with DNS rebinding (a
//! name of the attacker's that resolves to 127.0.0.1) even read the answers. So:
//!
//! - **Token.** With `admin_token`, every request needs `Authorization: Bearer <token>` (compared
//!   in constant time). A page cannot know it, and cannot add the header to a cross-origin request
//!   without a preflight that this server never approves.
//! - **Host** (without a token): the name must be the admin listener's own address or a loopback
//!   name (`localhost`, `127.0.0.1`, `[::1]`, …), with its port when one is given. A rebound name
//!   is refused: that is what defeats DNS rebinding.
//! - **Origin**: when a browser says where the request comes from (`Origin`, or
//!   `Sec-Fetch-Site: cross-site`/`same-site`), it must be the admin's own origin.
//! - **Content type**: a `POST` must say `Content-Type: application/json`, which a page cannot
//!   send to another origin without a preflight (`OPTIONS`, answered 405 without any CORS header,
//!   so the browser stops there).
//!
//! Every refusal is a 4xx with a message saying which check failed; none echoes a header value.

use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use super::api::error;
use super::http::{Request, Response};

/// What the admin listener requires of a request.
#[derive(Clone)]
pub struct Policy {
    token: Option<String>,
    listen: SocketAddr,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("listen", &self.listen)
            .finish()
    }
}

impl Policy {
    /// The policy of a listener on `listen`, with `token` required when set.
    pub fn new(token: Option<String>, listen: SocketAddr) -> Self {
        Self { token, listen }
    }

    /// `Ok` when `request` (headers read, body not yet) may go on; else the answer to send.
    pub fn check(&self, request: &Request) -> Result<(), Response> {
        match &self.token {
            Some(token) if !authorized(request, token) => {
                return Err(error(401, "missing or wrong bearer token", &[])
                    .with_header("WWW-Authenticate", "Bearer realm=\"ringmaster\""));
            }
            Some(_) => {}
            None => self.check_host(request)?,
        }
        self.check_origin(request)?;
        if request.method == "POST" && !is_json(request.header("content-type")) {
            return Err(error(
                415,
                "POST needs Content-Type: application/json (a page of another origin cannot send \
                 it without asking first)",
                &[],
            ));
        }
        Ok(())
    }

    fn check_host(&self, request: &Request) -> Result<(), Response> {
        let refuse = |why: &str| {
            Err(error(
                403,
                &format!(
                    "{why}: without admin_token, the Host must be this listener ({}) or a loopback \
                     name (protection against DNS rebinding)",
                    self.listen
                ),
                &[],
            ))
        };
        let Some(host) = request.header("host") else {
            return refuse("no Host header");
        };
        if self.is_own_authority(host) {
            Ok(())
        } else {
            refuse("the Host header names another server")
        }
    }

    fn check_origin(&self, request: &Request) -> Result<(), Response> {
        if let Some(site) = request.header("sec-fetch-site") {
            if !matches!(site, "same-origin" | "none") {
                return Err(error(
                    403,
                    "the browser says this request comes from another site (Sec-Fetch-Site)",
                    &[],
                ));
            }
        }
        let Some(origin) = request.header("origin") else {
            return Ok(());
        };
        let own = origin
            .strip_prefix("http://")
            .is_some_and(|authority| self.is_own_authority(authority));
        if own {
            Ok(())
        } else {
            Err(error(
                403,
                "the request comes from a page of another origin (Origin)",
                &[],
            ))
        }
    }

    /// `host[:port]` names this listener: its own address, or a loopback name, and its port
    /// when one is given.
    fn is_own_authority(&self, authority: &str) -> bool {
        let (name, port) = split_authority(authority);
        if port.is_some_and(|p| p != self.listen.port()) {
            return false;
        }
        let name = name.to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&name);
        match literal.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.listen.ip(),
            Err(_) => false,
        }
    }
}

/// Splits `name:port` (`[v6]:port`, or no port); a port that is not a number is `Some(0)`, which
/// matches no listener.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let (name, port) = match authority.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && (!name.contains(':') || name.ends_with(']')) => {
            (name, Some(port))
        }
        _ => (authority, None),
    };
    (name, port.map(|p| p.parse().unwrap_or(0)))
}

/// `application/json`, with parameters or not, in any case.
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Compares the bearer token in constant time: both sides are hashed first, so neither the
/// position of the first wrong byte nor the token's length shows in the time taken.
fn authorized(request: &Request, token: &str) -> bool {
    if request.header_count("authorization") != 1 {
        return false;
    }
    let Some(value) = request.header("authorization") else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let (a, b) = (
        Sha256::digest(given.trim().as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: "/api/reload".into(),
            query: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    fn open() -> Policy {
        Policy::new(None, "127.0.0.1:9090".parse().expect("addr"))
    }

    fn status(r: Result<(), Response>) -> u16 {
        r.err().map_or(200, |r| r.status)
    }

    #[test]
    fn loopback_names_and_the_own_address_pass() {
        let p = open();
        for host in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "127.1.2.3:9090",
            "api.localhost:9090",
        ] {
            assert_eq!(
                status(p.check(&request("GET", &[("host", host)]))),
                200,
                "{host}"
            );
        }
    }

    #[test]
    fn rebound_names_other_ports_and_no_host_are_refused() {
        let p = open();
        for host in [
            "evil.example:9090",
            "127.0.0.1.nip.io:9090",
            "127.0.0.1:8080",
            "10.0.0.1:9090",
            "localhost:abc",
            "",
        ] {
            assert_eq!(
                status(p.check(&request("GET", &[("host", host)]))),
                403,
                "{host:?}"
            );
        }
        assert_eq!(status(p.check(&request("GET", &[]))), 403);
    }

    #[test]
    fn other_origins_are_refused_and_the_own_one_passes() {
        let p = open();
        let host = ("host", "127.0.0.1:9090");
        let with = |extra: (&'static str, &'static str)| request("GET", &[host, extra]);
        assert_eq!(
            status(p.check(&with(("origin", "http://evil.example")))),
            403
        );
        assert_eq!(status(p.check(&with(("origin", "null")))), 403);
        assert_eq!(
            status(p.check(&with(("origin", "http://127.0.0.1:8000")))),
            403
        );
        assert_eq!(
            status(p.check(&with(("sec-fetch-site", "cross-site")))),
            403
        );
        assert_eq!(status(p.check(&with(("sec-fetch-site", "same-site")))), 403);
        assert_eq!(
            status(p.check(&with(("origin", "http://127.0.0.1:9090")))),
            200
        );
        assert_eq!(status(p.check(&with(("sec-fetch-site", "none")))), 200);
    }

    #[test]
    fn a_post_needs_json() {
        let p = open();
        let host = ("host", "localhost:9090");
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert_eq!(
                status(p.check(&request("POST", &[host, ("content-type", ct)]))),
                415,
                "{ct}"
            );
        }
        assert_eq!(status(p.check(&request("POST", &[host]))), 415);
        assert_eq!(
            status(p.check(&request(
                "POST",
                &[host, ("content-type", "Application/JSON; charset=utf-8")]
            ))),
            200
        );
    }

    #[test]
    fn with_a_token_the_token_decides_and_any_host_is_fine() {
        let p = Policy::new(
            Some("0123456789abcdef0123".into()),
            "10.0.0.5:9090".parse().expect("addr"),
        );
        let good = ("authorization", "Bearer 0123456789abcdef0123");
        assert_eq!(
            status(p.check(&request("GET", &[("host", "lb1.example:9090")]))),
            401
        );
        assert_eq!(
            status(p.check(&request("GET", &[("host", "lb1.example:9090"), good]))),
            200
        );
        assert_eq!(
            status(p.check(&request(
                "GET",
                &[("host", "x"), ("authorization", "Bearer wrong")]
            ))),
            401
        );
        // The token does not excuse a cross-origin page or a form post.
        assert_eq!(
            status(p.check(&request("POST", &[good, ("content-type", "text/plain")]))),
            415
        );
        assert_eq!(
            status(p.check(&request("GET", &[good, ("origin", "http://evil.example")]))),
            403
        );
        assert!(!format!("{p:?}").contains("0123456789abcdef"));
    }
}
