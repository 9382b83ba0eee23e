//! The access log: one line per connection, written when it closes, in logfmt or JSON, to stdout
//! or a file that SIGUSR1 reopens (logrotate).
//!
//! The worker never waits on the disk. Each worker formats lines into its own buffer
//! ([`LocalLog`], `!Send`, no lock), and hands the filled buffer to one writer thread
//! ([`AccessLogWriter`]) through a bounded channel: when the buffer passes 64 KiB, and every
//! 100 ms from [`LocalLog::run_flusher`]. If the writer falls behind and the channel is full, the
//! buffer's lines are counted in [`AccessLogWriter::dropped`] and thrown away: losing log lines is
//! better than stalling every connection on the core. The writer sends emptied buffers back, so in
//! steady state nothing is allocated.
//!
//! Wiring, in order:
//! 1. `AccessLogWriter::start(&config)` on the main thread, before the workers;
//! 2. each worker: `Rc::new(sink.local(format))`, spawn `run_flusher` on its runtime, and call
//!    [`LocalLog::write`] when a connection closes;
//! 3. SIGUSR1 → [`AccessLogWriter::reopen`];
//! 4. at exit, after the workers have dropped their `LocalLog`s (dropping one flushes it),
//!    [`AccessLogWriter::stop`].
//!
//! Files: `format.rs` (the two line formats), `time.rs` (RFC 3339 timestamps), `local.rs` (the
//! per-worker buffer), `writer.rs` (the writer thread), `output.rs` (its destination and write
//! errors).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

mod format;
mod local;
mod output;
mod time;
mod writer;

pub use local::{LocalLog, Sink};
pub use writer::AccessLogWriter;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// The client closed its side first.
    ClientClose,
    /// The server closed its side first.
    ServerClose,
    /// The idle timeout closed it.
    Timeout,
    /// The client did not finish its TLS handshake (passthrough: send its first byte) within the
    /// service's `handshake_timeout`.
    HandshakeTimeout,
    /// The client's TLS session ended without `close_notify`: what it sent may be cut short.
    ClientTruncated,
    /// The server's TLS session ended without `close_notify` (a crashed worker, a cut link).
    ServerTruncated,
    /// The client reset the connection.
    ClientReset,
    /// The server reset the connection.
    ServerReset,
    /// Something else failed on the client side (TLS handshake, protocol); see [`Entry::error`].
    ClientError,
    /// Something else failed on the server side (connect, TLS to the server); see
    /// [`Entry::error`].
    ServerError,
    /// The client's address already had `max_connections_per_ip` connections open.
    IpLimit,
    /// Ringmaster shut it down: the drain timeout of a shutdown or reload ran out.
    Shutdown,
}

impl End {
    /// Every end, in declaration order (`ALL[end as usize] == end`).
    pub const ALL: [End; 12] = [
        End::ClientClose,
        End::ServerClose,
        End::Timeout,
        End::HandshakeTimeout,
        End::ClientTruncated,
        End::ServerTruncated,
        End::ClientReset,
        End::ServerReset,
        End::ClientError,
        End::ServerError,
        End::IpLimit,
        End::Shutdown,
    ];

    /// The value written in the `end` field.
    pub fn as_str(self) -> &'static str {
        match self {
            End::ClientClose => "client_close",
            End::ServerClose => "server_close",
            End::Timeout => "timeout",
            End::HandshakeTimeout => "handshake_timeout",
            End::ClientTruncated => "client_truncated",
            End::ServerTruncated => "server_truncated",
            End::ClientReset => "client_reset",
            End::ServerReset => "server_reset",
            End::ClientError => "client_error",
            End::ServerError => "server_error",
            End::IpLimit => "ip_limit",
            End::Shutdown => "shutdown",
        }
    }
}

/// One line of the access log: one connection, written at close.
///
/// Borrowed strings keep writing a line allocation-free; the fields are written in declaration
/// order, absent optional fields are left out (in both formats).
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When the connection was accepted (`time`, RFC 3339 UTC with milliseconds).
    pub time: SystemTime,
    /// The client's address (`client`).
    pub client: SocketAddr,
    /// The virtual service's name (`service`).
    pub service: &'a str,
    /// The real server it was relayed to (`server`); `None` when none was reached.
    pub server: Option<SocketAddr>,
    /// `passthrough`, `offload` or `reencrypt` (`mode`).
    pub mode: &'static str,
    /// The client-side TLS version, e.g. `"TLSv1.3"` (`tls_version`); `None` in passthrough or
    /// before the handshake finished.
    pub tls_version: Option<&'static str>,
    /// The client-side cipher suite, e.g. `"TLS13_AES_256_GCM_SHA384"` (`cipher`).
    pub cipher: Option<&'static str>,
    /// The server name the client asked for (`sni`). Client-controlled: always escaped.
    pub sni: Option<&'a str>,
    /// The negotiated ALPN protocol, e.g. `"h2"` (`alpn`).
    pub alpn: Option<&'a str>,
    /// Bytes received from the client (`bytes_in`).
    pub bytes_in: u64,
    /// Bytes sent to the client (`bytes_out`).
    pub bytes_out: u64,
    /// From accept to close (`duration_ms`, milliseconds with three decimals).
    pub duration: Duration,
    /// How it ended (`end`).
    pub end: End,
    /// For [`End::ClientError`] and [`End::ServerError`]: what failed (`error`, written last).
    pub error: Option<&'a str>,
}

/// A minimal passthrough entry with `bytes_in = n`, for the tests of this module's files.
#[cfg(test)]
pub(crate) fn test_entry(n: u64) -> Entry<'static> {
    Entry {
        time: std::time::UNIX_EPOCH,
        client: "127.0.0.2:40000".parse().expect("address"),
        service: "web",
        server: None,
        mode: "passthrough",
        tls_version: None,
        cipher: None,
        sni: None,
        alpn: None,
        bytes_in: n,
        bytes_out: 0,
        duration: std::time::Duration::ZERO,
        end: End::ClientClose,
        error: None,
    }
}
