//! Routing of admin requests: one handler per route, each turning a [`Request`] into a
//! [`Response`] through [`Control`]. Who may send a request at all (token, Host, Origin, content
//! type) was decided before, by [`super::policy`]. No I/O here, so every route is tested without
//! a socket.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/` | redirects to `/stats` |
//! | GET | `/stats` | the HTML page ([`super::stats`]) |
//! | GET | `/metrics` | Prometheus text ([`super::metrics`]) |
//! | GET | `/api/services` | the whole [`Snapshot`] as JSON |
//! | GET | `/api/services/{service}` | one service as JSON |
//! | POST | `/api/services/{service}/servers/{address}/{drain,disable,enable}` | [`Control::server_action`] |
//! | POST | `/api/services/{service}/address` | [`Control::change_address`]; body `{"address":"ADDR"}` (or `"ADDR"`) |
//! | POST | `/api/reload` | [`Control::reload`] |
//!
//! `HEAD` is answered wherever `GET` is. Errors are JSON `{"error": "...", "problems": [...]}`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::control::{Control, ControlError, ServerAction};
use super::http::{percent_decode, Request, Response, HTML, JSON};
use super::snapshot::Snapshot;
use super::{metrics, stats};

/// Answers `request`, which passed the listener's [`super::policy::Policy`].
pub fn handle(request: &Request, control: &dyn Control) -> Response {
    let segments = match request
        .path
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => return error(400, &e.to_string(), &[]),
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method.as_str();
    let get = matches!(method, "GET" | "HEAD");
    let post = method == "POST";

    match segments[..] {
        [""] if get => Response::new(302, HTML, "<a href=\"/stats\">/stats</a>\n")
            .with_header("Location", "/stats"),
        ["stats"] if get => {
            let page = stats::render(&control.snapshot(), now_unix());
            Response::new(200, HTML, page)
        }
        ["metrics"] if get => Response::new(
            200,
            metrics::CONTENT_TYPE,
            metrics::render(&control.snapshot()),
        ),
        ["api", "services"] if get => json(200, &control.snapshot()),
        ["api", "services", service] if get => one_service(&control.snapshot(), service),
        ["api", "services", service, "servers", server, action] if post => {
            server_action(control, service, server, action)
        }
        ["api", "services", service, "address"] if post => {
            change_address(control, service, &request.body)
        }
        ["api", "reload"] if post => reload(control),
        [""] | ["stats"] | ["metrics"] | ["api", "services"] | ["api", "services", _] => {
            not_allowed("GET, HEAD")
        }
        ["api", "services", _, "servers", _, _]
        | ["api", "services", _, "address"]
        | ["api", "reload"] => not_allowed("POST"),
        _ => error(404, &format!("no such page: {}", request.path), &[]),
    }
}

fn one_service(snapshot: &Snapshot, name: &str) -> Response {
    match snapshot.services.iter().find(|s| s.name == name) {
        Some(service) => json(200, service),
        None => error(404, &format!("no service named {name:?}"), &[]),
    }
}

fn server_action(control: &dyn Control, service: &str, server: &str, action: &str) -> Response {
    let act = match action {
        "drain" => ServerAction::Drain,
        "disable" => ServerAction::Disable,
        "enable" => ServerAction::Enable,
        other => {
            return error(
                404,
                &format!("no action {other:?}: use drain, disable or enable"),
                &[],
            )
        }
    };
    match control.server_action(service, server, act) {
        Ok(()) => {
            tracing::info!(service, server, action, "admin: server action done");
            json(
                200,
                &serde_json::json!({"service": service, "server": server, "action": action}),
            )
        }
        Err(e) => {
            tracing::warn!(service, server, action, error = %e, "admin: server action refused");
            control_error(&e)
        }
    }
}

fn change_address(control: &dyn Control, service: &str, body: &[u8]) -> Response {
    let address = match parse_address_body(body) {
        Ok(a) => a,
        Err(msg) => return error(400, &msg, &[]),
    };
    match control.change_address(service, &address) {
        Ok(old) => {
            tracing::info!(service, old = %old, new = %address, "admin: service address changed");
            json(
                200,
                &serde_json::json!({"service": service, "old": old.to_string(), "new": address}),
            )
        }
        Err(e) => {
            tracing::warn!(service, new = %address, error = %e, "admin: address change refused");
            control_error(&e)
        }
    }
}

/// The new listen address: `{"address": "127.0.0.1:9443"}`, the JSON string `"127.0.0.1:9443"`,
/// or the bare address.
fn parse_address_body(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "the body is not UTF-8".to_string())?
        .trim();
    if text.starts_with('"') {
        let address: String = serde_json::from_str(text)
            .map_err(|e| format!("the body is not a JSON string: {e}"))?;
        return non_empty(address.trim().to_string());
    }
    if text.starts_with('{') {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            address: String,
        }
        let b: Body = serde_json::from_str(text)
            .map_err(|e| format!("the body is not {{\"address\": \"HOST:PORT\"}}: {e}"))?;
        return Ok(b.address.trim().to_string()).and_then(non_empty);
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("send one address such as 127.0.0.1:9443 as the body".to_string());
    }
    non_empty(text.to_string())
}

fn non_empty(address: String) -> Result<String, String> {
    if address.is_empty() {
        Err("send the new listen address as the body, e.g. 127.0.0.1:9443".to_string())
    } else {
        Ok(address)
    }
}

fn reload(control: &dyn Control) -> Response {
    match control.reload() {
        Ok(summary) => {
            tracing::info!(summary = %summary, "admin: configuration reloaded");
            json(
                200,
                &serde_json::json!({"reloaded": true, "summary": summary}),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin: reload refused");
            control_error(&e)
        }
    }
}

/// Maps a [`ControlError`] to its status and JSON body.
pub fn control_error(e: &ControlError) -> Response {
    match e {
        ControlError::NotFound(m) => error(404, m, &[]),
        ControlError::BadRequest(m) => error(400, m, &[]),
        ControlError::Invalid(problems) => {
            let n = problems.len();
            let msg = format!(
                "the configuration is invalid ({n} problem{}); nothing was changed",
                if n == 1 { "" } else { "s" }
            );
            error(422, &msg, problems)
        }
        ControlError::Conflict(m) => error(409, m, &[]),
    }
}

/// `{"error": message, "problems": [...]}` with `status`.
pub fn error(status: u16, message: &str, problems: &[String]) -> Response {
    json(
        status,
        &serde_json::json!({"error": message, "problems": problems}),
    )
}

fn not_allowed(allow: &'static str) -> Response {
    error(405, &format!("method not allowed here; use {allow}"), &[]).with_header("Allow", allow)
}

fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            Response::new(status, JSON, body)
        }
        Err(e) => Response::new(
            500,
            JSON,
            format!("{{\"error\": \"serialising the answer: {e}\", \"problems\": []}}\n"),
        ),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    /// Records the calls; answers from a fixed snapshot with one service `web`.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
    }

    impl Control for Fake {
        fn snapshot(&self) -> Snapshot {
            Snapshot {
                version: "0.1.0",
                uptime_secs: 1,
                config_path: "r.toml".into(),
                reloads: 0,
                reload_failures: 0,
                limit: crate::admin::snapshot::LimitSnapshot {
                    current: 0,
                    limit: Some(100),
                    reached: 0,
                },
                workers: vec![],
                services: vec![crate::admin::snapshot::ServiceSnapshot {
                    name: "web".into(),
                    listen: "127.0.0.1:443".parse().unwrap(),
                    mode: "offload",
                    schedule: "round-robin",
                    connections_total: 0,
                    connections_current: 0,
                    client_tls_errors: 0,
                    no_server: 0,
                    persistence_entries: None,
                    limit: crate::admin::snapshot::LimitSnapshot {
                        current: 0,
                        limit: None,
                        reached: 0,
                    },
                    per_ip: None,
                    ends: vec![],
                    extended_protection: false,
                    servers: vec![],
                }],
            }
        }
        fn server_action(&self, svc: &str, srv: &str, a: ServerAction) -> Result<(), ControlError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{a:?} {svc} {srv}"));
            if svc == "web" {
                Ok(())
            } else {
                Err(ControlError::NotFound(format!("no service {svc}")))
            }
        }
        fn change_address(&self, svc: &str, addr: &str) -> Result<SocketAddr, ControlError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("move {svc} {addr}"));
            Ok("127.0.0.1:443".parse().unwrap())
        }
        fn reload(&self) -> Result<String, ControlError> {
            Err(ControlError::Invalid(vec![
                "a:1:1 bad".into(),
                "a:2:1 worse".into(),
            ]))
        }
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    fn body(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn routes_and_methods() {
        let fake = Fake::default();
        let call = |m: &str, p: &str, b: &str| handle(&req(m, p, &[], b), &fake);
        let r = call("GET", "/", "");
        assert_eq!((r.status, r.headers[0].1.as_str()), (302, "/stats"));
        assert_eq!(call("GET", "/stats", "").content_type, HTML);
        assert_eq!(call("HEAD", "/metrics", "").status, 200);
        assert_eq!(
            body(&call("GET", "/api/services/web", ""))
                .get("name")
                .unwrap(),
            "web"
        );
        assert_eq!(call("GET", "/api/services/nope", "").status, 404);
        assert_eq!(call("GET", "/nope", "").status, 404);
        assert_eq!(call("GET", "/api/services/", "").status, 404);
        let r = call("POST", "/metrics", "");
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, vec![("Allow", "GET, HEAD".to_string())]);
        let r = call("GET", "/api/reload", "");
        assert_eq!((r.status, r.headers[0].1.as_str()), (405, "POST"));
        assert_eq!(
            call("DELETE", "/api/services/web/servers/x/drain", "").status,
            405
        );
        assert_eq!(
            call("POST", "/api/services/web/servers/x/explode", "").status,
            404
        );
        assert_eq!(call("GET", "/api/services/%zz", "").status, 400);
    }

    #[test]
    fn actions_reach_control_with_decoded_addresses() {
        let fake = Fake::default();
        let call = |p: &str, b: &str| handle(&req("POST", p, &[], b), &fake);
        let r = call("/api/services/web/servers/%5B%3A%3A1%5D%3A80/drain", "");
        assert_eq!(r.status, 200);
        assert_eq!(body(&r)["server"], "[::1]:80");
        assert_eq!(
            call("/api/services/web/servers/127.0.0.1:8080/enable", "").status,
            200
        );
        let r = call("/api/services/nope/servers/127.0.0.1:8080/disable", "");
        assert_eq!(
            (r.status, body(&r)["error"].as_str()),
            (404, Some("no service nope"))
        );
        let r = call("/api/services/web/address", " 127.0.0.1:9443\n");
        assert_eq!(
            body(&r),
            serde_json::json!({"service": "web", "old": "127.0.0.1:443", "new": "127.0.0.1:9443"})
        );
        assert_eq!(
            call("/api/services/web/address", r#"{"address": "[::1]:9443"}"#).status,
            200
        );
        assert_eq!(
            call("/api/services/web/address", r#""[::1]:9444""#).status,
            200
        );
        assert_eq!(
            call("/api/services/web/address", r#"{"addr": "x"}"#).status,
            400
        );
        assert_eq!(call("/api/services/web/address", "").status, 400);
        assert_eq!(call("/api/services/web/address", "a b").status, 400);
        assert_eq!(
            *fake.calls.lock().unwrap(),
            [
                "Drain web [::1]:80",
                "Enable web 127.0.0.1:8080",
                "Disable nope 127.0.0.1:8080",
                "move web 127.0.0.1:9443",
                "move web [::1]:9443",
                "move web [::1]:9444",
            ]
        );
    }

    #[test]
    fn control_errors_map_to_statuses() {
        let fake = Fake::default();
        let r = handle(&req("POST", "/api/reload", &[], ""), &fake);
        assert_eq!(r.status, 422);
        assert_eq!(
            body(&r)["problems"],
            serde_json::json!(["a:1:1 bad", "a:2:1 worse"])
        );
        for (e, status) in [
            (ControlError::NotFound("x".into()), 404),
            (ControlError::BadRequest("x".into()), 400),
            (ControlError::Conflict("in use".into()), 409),
        ] {
            let r = control_error(&e);
            assert_eq!(r.status, status);
            assert_eq!(
                body(&r),
                serde_json::json!({"error": e.to_string(), "problems": []})
            );
        }
    }
}
