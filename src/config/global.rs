//! The operations keys of `[global]`: the admin listener, its token and the access log.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::{Spanned, Value};

use super::address::{listen_address, Rejection};
use super::file::{RawAccessLog, RawGlobal};
use super::validate::Checker;
use super::{AccessLog, Global, LogFormat, LogTarget, Secret, Service};

/// Shortest `admin_token` accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

impl Checker<'_> {
    /// `admin` and `admin_token`. A non-loopback `admin` without a token is refused: the API can
    /// drain servers and move services.
    pub(super) fn admin(
        &mut self,
        raw: Option<&RawGlobal>,
    ) -> (Option<SocketAddr>, Option<Secret>) {
        let token = raw
            .and_then(|g| g.admin_token.as_ref())
            .and_then(|v| self.token(v));
        let Some(v) = raw.and_then(|g| g.admin.as_ref()) else {
            if let Some(v) = raw.and_then(|g| g.admin_token.as_ref()) {
                self.report(
                    v,
                    "admin_token is set but admin is not: there is no admin listener to protect",
                    "add admin = \"127.0.0.1:9090\" to [global], or remove admin_token",
                );
            }
            return (None, token);
        };
        let Some(text) = self.string("admin", v, "127.0.0.1:9090") else {
            return (None, token);
        };
        let addr = match listen_address(text) {
            Ok(addr) => addr,
            Err(Rejection { message, fix }) => {
                self.report(v, message.replace("listen", "admin"), fix);
                return (None, token);
            }
        };
        let has_token = raw.and_then(|g| g.admin_token.as_ref()).is_some();
        if !addr.ip().is_loopback() && !has_token {
            self.report(
                v,
                format!("admin listens on {addr}, reachable from other machines, without admin_token"),
                format!(
                    "set admin_token = \"<a random string of at least {MIN_TOKEN_LEN} characters>\" in [global] (e.g. from `openssl rand -hex 24`), or listen on loopback: admin = \"127.0.0.1:{}\"",
                    addr.port()
                ),
            );
        }
        (Some(addr), token)
    }

    fn token(&mut self, v: &Spanned<Value>) -> Option<Secret> {
        let Value::String(text) = v.get_ref() else {
            self.report_secret(
                v,
                "admin_token must be a string",
                "put it in quotes, e.g. admin_token = \"<openssl rand -hex 24>\"",
            );
            return None;
        };
        if text.len() < MIN_TOKEN_LEN || text.chars().any(|c| !c.is_ascii_graphic()) {
            self.report_secret(
                v,
                format!("admin_token must be at least {MIN_TOKEN_LEN} printable characters without spaces"),
                "generate one with `openssl rand -hex 24`",
            );
            return None;
        }
        Some(Secret(text.to_owned()))
    }

    /// `access_log = { path = "stdout" | "FILE", format = "logfmt" | "json" }`.
    pub(super) fn access_log(&mut self, raw: &Spanned<RawAccessLog>) -> Option<AccessLog> {
        let raw = raw.get_ref();
        let target = match &raw.path {
            None => Some(LogTarget::Stdout),
            Some(v) => match self.string("path", v, "/var/log/ringmaster/access.log")? {
                "stdout" | "-" => Some(LogTarget::Stdout),
                "" => {
                    self.report(
                        v,
                        "access_log path is empty",
                        "write path = \"stdout\" or a file, e.g. path = \"/var/log/ringmaster/access.log\"",
                    );
                    None
                }
                text => {
                    let path = PathBuf::from(text);
                    let path = if path.is_absolute() {
                        path
                    } else {
                        self.dir.join(path)
                    };
                    self.log_file(v, path)
                }
            },
        };
        let format = match &raw.format {
            None => Some(LogFormat::Logfmt),
            Some(v) => match self.string("format", v, "logfmt")? {
                "logfmt" => Some(LogFormat::Logfmt),
                "json" => Some(LogFormat::Json),
                _ => {
                    self.report(
                        v,
                        "access_log format must be \"logfmt\" or \"json\"",
                        "write format = \"logfmt\" (key=value pairs) or format = \"json\" (one object per line)",
                    );
                    None
                }
            },
        };
        Some(AccessLog {
            target: target?,
            format: format?,
        })
    }

    /// A log file must be in an existing directory (it is created if missing).
    fn log_file(&mut self, v: &Spanned<Value>, path: PathBuf) -> Option<LogTarget> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            self.report(
                v,
                format!(
                    "the access log's directory {} does not exist",
                    dir.map(|d| d.display().to_string()).unwrap_or_default()
                ),
                "create the directory (writable by ringmaster's user) or choose another path",
            );
            return None;
        }
        Some(LogTarget::File(path))
    }

    /// The admin listener may not take a service's address.
    pub(super) fn admin_collision(
        &mut self,
        raw: Option<&RawGlobal>,
        global: &Global,
        services: &[Service],
    ) {
        let (Some(admin), Some(v)) = (global.admin, raw.and_then(|g| g.admin.as_ref())) else {
            return;
        };
        if let Some(s) = services.iter().find(|s| s.listen == admin) {
            self.report(
                v,
                format!(
                    "admin address {admin} is the listen address of service {}",
                    s.name
                ),
                "give the admin listener its own port, e.g. admin = \"127.0.0.1:9090\"",
            );
        }
    }
}
