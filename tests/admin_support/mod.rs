//! The admin pages' test kit: a fake `Control` whose snapshot holds two services and five
//! servers in every state, the admin server in front of it, and a std HTTP client with timeouts.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

pub mod chromium;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringmaster::admin::control::{Control, ControlError, ServerAction};
use ringmaster::admin::server::{self, AdminServer};
use ringmaster::admin::snapshot::{
    AdminState, CheckSnapshot, EndCount, LimitSnapshot, PerIpSnapshot, ServerSnapshot,
    ServiceSnapshot, Snapshot, WorkerSnapshot,
};

/// Every read and write of the test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The servers of the fake snapshot: (service, address, state).
pub const SERVERS: [(&str, &str, &str); 5] = [
    ("exchange", "10.0.0.11:443", "up"),
    ("exchange", "10.0.0.12:443", "down"),
    ("exchange", "[2001:db8::13]:443", "drain"),
    ("intranet", "127.0.0.1:8080", "maint"),
    ("intranet", "127.0.0.1:8081", "up"),
];

/// A `Control` that answers from a fixed snapshot and records every call.
pub struct Fake {
    pub calls: Mutex<Vec<String>>,
    pub reload_ok: AtomicBool,
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            reload_ok: AtomicBool::new(false),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn fake_snapshot() -> Snapshot {
    let server = |service: &str, address: &str, state: &'static str| {
        let n = SERVERS.iter().position(|s| s.1 == address).unwrap() as u64;
        ServerSnapshot {
            address: address.parse().unwrap(),
            weight: 1 + n as u32,
            health: if state == "down" { "down" } else { "up" },
            admin: match state {
                "drain" => AdminState::Drain,
                "maint" => AdminState::Disabled,
                _ => AdminState::Enabled,
            },
            state,
            connections_total: 1000 * (n + 1),
            connections_current: n,
            bytes_in: 3_000_000 * (n + 1),
            bytes_out: 250_000_000 * (n + 1),
            connect_errors: if state == "down" { 17 } else { 0 },
            server_tls_errors: if state == "down" { 2 } else { 0 },
            last_check: Some(CheckSnapshot {
                ok: state != "down",
                reason: if state == "down" {
                    "connect refused"
                } else {
                    "HTTP 200"
                }
                .into(),
                at_unix: now_unix() - 2 - n,
                took_ms: 3 + n,
            }),
            ep_match: (service == "exchange").then_some(state != "down"),
        }
    };
    let servers = |service: &str| {
        SERVERS
            .iter()
            .filter(|s| s.0 == service)
            .map(|s| server(s.0, s.1, s.2))
            .collect::<Vec<_>>()
    };
    Snapshot {
        version: "0.1.0",
        uptime_secs: 3 * 86_400 + 4000,
        config_path: "/etc/ringmaster/ringmaster.toml".into(),
        reloads: 4,
        reload_failures: 1,
        limit: LimitSnapshot {
            current: 10,
            limit: Some(9950),
            reached: 0,
        },
        workers: (0..2)
            .map(|i| WorkerSnapshot {
                index: i,
                cpu: i,
                connections_total: 2500 + i as u64,
                connections_current: 3,
                accept_errors: i as u64,
            })
            .collect(),
        services: vec![
            ServiceSnapshot {
                name: "exchange".into(),
                listen: "0.0.0.0:443".parse().unwrap(),
                mode: "reencrypt",
                schedule: "source-hash",
                connections_total: 6000,
                connections_current: 3,
                client_tls_errors: 12,
                no_server: 0,
                persistence_entries: Some(17),
                limit: LimitSnapshot {
                    current: 3,
                    limit: Some(5000),
                    reached: 2,
                },
                per_ip: Some(PerIpSnapshot {
                    limit: 50,
                    refused: 4,
                    untracked: 0,
                }),
                ends: vec![EndCount {
                    end: "handshake_timeout",
                    count: 9,
                }],
                extended_protection: true,
                servers: servers("exchange"),
            },
            ServiceSnapshot {
                name: "intranet".into(),
                listen: "127.0.0.1:8443".parse().unwrap(),
                mode: "offload",
                schedule: "round-robin",
                connections_total: 9000,
                connections_current: 7,
                client_tls_errors: 0,
                no_server: 1,
                persistence_entries: None,
                limit: LimitSnapshot {
                    current: 7,
                    limit: None,
                    reached: 0,
                },
                per_ip: None,
                ends: vec![],
                extended_protection: false,
                servers: servers("intranet"),
            },
        ],
    }
}

impl Control for Fake {
    fn snapshot(&self) -> Snapshot {
        fake_snapshot()
    }

    fn server_action(
        &self,
        service: &str,
        server: &str,
        action: ServerAction,
    ) -> Result<(), ControlError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{action:?} {service} {server}"));
        let snapshot = fake_snapshot();
        let svc = snapshot
            .services
            .iter()
            .find(|s| s.name == service)
            .ok_or_else(|| ControlError::NotFound(format!("no service {service:?}")))?;
        let found = server
            .parse::<SocketAddr>()
            .ok()
            .and_then(|a| svc.servers.iter().find(|s| s.address == a));
        match found {
            Some(_) => Ok(()),
            None => Err(ControlError::NotFound(format!(
                "service {service:?} has no server {server:?}"
            ))),
        }
    }

    fn change_address(&self, service: &str, address: &str) -> Result<SocketAddr, ControlError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("move {service} {address}"));
        let old = fake_snapshot()
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.listen)
            .ok_or_else(|| ControlError::NotFound(format!("no service {service:?}")))?;
        let new: SocketAddr = address
            .parse()
            .map_err(|_| ControlError::BadRequest(format!("{address:?} is not HOST:PORT")))?;
        if new.port() == 1 {
            return Err(ControlError::Conflict(format!("{new}: address in use")));
        }
        Ok(old)
    }

    fn reload(&self) -> Result<String, ControlError> {
        self.calls.lock().unwrap().push("reload".into());
        if self.reload_ok.load(Ordering::SeqCst) {
            Ok("2 services, 5 servers".into())
        } else {
            Err(ControlError::Invalid(vec![
                "ringmaster.toml:3:10: workers: expected \"auto\" or a number".into(),
                "ringmaster.toml:9:1: service \"x\": no server".into(),
            ]))
        }
    }
}

pub fn start(fake: &Arc<Fake>, token: Option<&str>) -> AdminServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let control: Arc<dyn Control> = fake.clone();
    server::spawn(listener, token.map(str::to_string), control).unwrap()
}

/// A parsed answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Sends `raw` as is and reads the answer until the server closes.
pub fn raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    read_reply(&mut s, raw.starts_with(b"HEAD "))
}

/// Reads an answer until the server closes; `to_head` when it answers a `HEAD` request (no body).
pub fn read_reply(s: &mut TcpStream, to_head: bool) -> Reply {
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    let reply = Reply {
        status,
        headers,
        body: body.to_string(),
    };
    let length: usize = reply.header("content-length").unwrap().parse().unwrap();
    let body_len = if to_head { 0 } else { length };
    assert_eq!(body_len, reply.body.len(), "Content-Length of {reply:?}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply
}

/// One request with `Host`, `Content-Length` (when there is a body), `Content-Type:
/// application/json` for a `POST` that names no other, and `headers`.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    let typed = headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-type:"));
    if method == "POST" && !typed {
        req.push_str("Content-Type: application/json\r\n");
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(addr, req.as_bytes())
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], "")
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request(addr, "POST", path, &[], body)
}
