//! The two line formats, logfmt and JSON lines, written straight into a worker's buffer.
//!
//! Both write the same keys in the same order and leave absent optional keys out. Every string
//! that can come from outside (SNI and ALPN from the client, error text) is escaped so that a
//! value can never end the line or forge another key.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::{time, Entry};
use crate::config::LogFormat;

/// One field's value, before a format decides how to write it.
enum Value<'a> {
    Str(&'a str),
    Addr(SocketAddr),
    Int(u64),
    /// Written as milliseconds with exactly three decimals (microsecond precision).
    Millis(Duration),
}

/// The fields of a line in output order; `None` leaves the key out.
fn fields<'e>(e: &'e Entry<'_>, time: &'e str) -> [(&'static str, Option<Value<'e>>); 14] {
    [
        ("time", Some(Value::Str(time))),
        ("client", Some(Value::Addr(e.client))),
        ("service", Some(Value::Str(e.service))),
        ("server", e.server.map(Value::Addr)),
        ("mode", Some(Value::Str(e.mode))),
        ("tls_version", e.tls_version.map(Value::Str)),
        ("cipher", e.cipher.map(Value::Str)),
        ("sni", e.sni.map(Value::Str)),
        ("alpn", e.alpn.map(Value::Str)),
        ("bytes_in", Some(Value::Int(e.bytes_in))),
        ("bytes_out", Some(Value::Int(e.bytes_out))),
        ("duration_ms", Some(Value::Millis(e.duration))),
        ("end", Some(Value::Str(e.end.as_str()))),
        ("error", e.error.map(Value::Str)),
    ]
}

/// Appends one line, `\n` included, for `entry` to `out`.
///
/// Writing into a `Vec` cannot fail, but should it ever, the caller truncates `out` back to where
/// the line began, so a half-written line never reaches the log.
pub(crate) fn write_line(
    out: &mut Vec<u8>,
    format: LogFormat,
    entry: &Entry<'_>,
) -> io::Result<()> {
    let stamp = time::rfc3339_millis(entry.time);
    // The timestamp is built from ASCII digits and separators only.
    let stamp = std::str::from_utf8(&stamp).map_err(io::Error::other)?;
    let fields = fields(entry, stamp);
    match format {
        LogFormat::Logfmt => logfmt(out, &fields),
        LogFormat::Json => json(out, &fields),
    }
}

fn logfmt(out: &mut Vec<u8>, fields: &[(&'static str, Option<Value<'_>>)]) -> io::Result<()> {
    let mut first = true;
    for (key, value) in fields {
        let Some(value) = value else { continue };
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        match value {
            Value::Str(s) => logfmt_str(out, s)?,
            Value::Addr(a) => write!(out, "{a}")?,
            Value::Int(n) => write!(out, "{n}")?,
            Value::Millis(d) => millis(out, *d)?,
        }
    }
    out.push(b'\n');
    Ok(())
}

/// Whether `c` must not appear raw in a logfmt value: it would end the value or the line, fake a
/// key, or be invisible (Unicode line and paragraph separators included).
fn logfmt_special(c: char) -> bool {
    c == ' ' || c == '=' || c == '"' || c.is_control() || (!c.is_ascii() && c.is_whitespace())
}

/// Writes `s` bare when it is safe, else in double quotes with `"` and `\` backslash-escaped,
/// `\n`, `\r`, `\t` as such and other control or non-ASCII whitespace characters as `\uXXXX`.
fn logfmt_str(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    if !s.is_empty() && !s.chars().any(logfmt_special) {
        out.extend_from_slice(s.as_bytes());
        return Ok(());
    }
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            // All such characters are in the Basic Multilingual Plane: four digits suffice.
            c if logfmt_special(c) && c != ' ' && c != '=' => {
                write!(out, "\\u{:04x}", u32::from(c))?
            }
            c => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
    Ok(())
}

fn json(out: &mut Vec<u8>, fields: &[(&'static str, Option<Value<'_>>)]) -> io::Result<()> {
    out.push(b'{');
    let mut first = true;
    for (key, value) in fields {
        let Some(value) = value else { continue };
        if !first {
            out.push(b',');
        }
        first = false;
        // Keys are fixed ASCII identifiers: nothing to escape.
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Value::Str(s) => serde_json::to_writer(&mut *out, s)?,
            // An address's text is digits, hex, `.:[]%` and a zone index: nothing to escape.
            Value::Addr(a) => write!(out, "\"{a}\"")?,
            Value::Int(n) => write!(out, "{n}")?,
            Value::Millis(d) => millis(out, *d)?,
        }
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// `12.345`: milliseconds with three decimals, a valid number in both formats.
fn millis(out: &mut Vec<u8>, d: Duration) -> io::Result<()> {
    let micros = d.as_micros();
    write!(out, "{}.{:03}", micros / 1000, micros % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::End;
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;

    /// 2026-11-26T20:41:03.123Z.
    fn accepted() -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_725_663_123)
    }

    fn full() -> Entry<'static> {
        Entry {
            time: accepted(),
            client: "127.0.0.2:40000".parse().expect("address"),
            service: "web",
            server: Some("127.0.0.1:8080".parse().expect("address")),
            mode: "reencrypt",
            tls_version: Some("TLSv1.3"),
            cipher: Some("TLS13_AES_256_GCM_SHA384"),
            sni: Some("www.example.com"),
            alpn: Some("h2"),
            bytes_in: 10,
            bytes_out: 20,
            duration: Duration::from_micros(12_345),
            end: End::ClientClose,
            error: None,
        }
    }

    fn minimal_error() -> Entry<'static> {
        Entry {
            time: accepted(),
            client: "[2001:db8::7]:51000".parse().expect("address"),
            service: "web",
            server: None,
            mode: "passthrough",
            tls_version: None,
            cipher: None,
            sni: None,
            alpn: None,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::from_micros(512),
            end: End::ServerError,
            error: Some("connect 127.0.0.1:8080: connection refused"),
        }
    }

    fn line(format: LogFormat, e: &Entry<'_>) -> String {
        let mut out = Vec::new();
        write_line(&mut out, format, e).expect("writing into a Vec");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn logfmt_full_entry() {
        assert_eq!(
            line(LogFormat::Logfmt, &full()),
            "time=2026-11-26T20:41:03.123Z client=127.0.0.2:40000 service=web \
             server=127.0.0.1:8080 mode=reencrypt tls_version=TLSv1.3 \
             cipher=TLS13_AES_256_GCM_SHA384 sni=www.example.com alpn=h2 bytes_in=10 \
             bytes_out=20 duration_ms=12.345 end=client_close\n"
        );
    }

    #[test]
    fn logfmt_minimal_error_entry() {
        assert_eq!(
            line(LogFormat::Logfmt, &minimal_error()),
            "time=2026-11-26T20:41:03.123Z client=[2001:db8::7]:51000 service=web \
             mode=passthrough bytes_in=0 bytes_out=0 duration_ms=0.512 end=server_error \
             error=\"connect 127.0.0.1:8080: connection refused\"\n"
        );
    }

    #[test]
    fn json_full_entry() {
        assert_eq!(
            line(LogFormat::Json, &full()),
            r#"{"time":"2026-11-26T20:41:03.123Z","client":"127.0.0.2:40000","service":"web","server":"127.0.0.1:8080","mode":"reencrypt","tls_version":"TLSv1.3","cipher":"TLS13_AES_256_GCM_SHA384","sni":"www.example.com","alpn":"h2","bytes_in":10,"bytes_out":20,"duration_ms":12.345,"end":"client_close"}"#
                .to_owned()
                + "\n"
        );
    }

    #[test]
    fn json_minimal_error_entry() {
        assert_eq!(
            line(LogFormat::Json, &minimal_error()),
            r#"{"time":"2026-11-26T20:41:03.123Z","client":"[2001:db8::7]:51000","service":"web","mode":"passthrough","bytes_in":0,"bytes_out":0,"duration_ms":0.512,"end":"server_error","error":"connect 127.0.0.1:8080: connection refused"}"#
                .to_owned()
                + "\n"
        );
    }

    #[test]
    fn durations_keep_three_decimals() {
        for (d, text) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_millis(12), "12.000"),
            (Duration::from_nanos(1_999), "0.001"),
            (Duration::from_secs(3600), "3600000.000"),
        ] {
            let mut out = Vec::new();
            millis(&mut out, d).expect("writing into a Vec");
            assert_eq!(out, text.as_bytes());
        }
    }

    /// Client-controlled SNI trying to end the line, add keys and break the quoting.
    const HOSTILE: &str = "evil\" end=timeout\nforged=1 \\\"\r\t\u{1b}[31m\u{7f}\u{85}\u{2028}é";

    fn hostile() -> Entry<'static> {
        Entry {
            sni: Some(HOSTILE),
            alpn: Some(""),
            ..full()
        }
    }

    #[test]
    fn logfmt_escapes_hostile_sni() {
        let text = line(LogFormat::Logfmt, &hostile());
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        assert!(
            text.contains(
                r#" sni="evil\" end=timeout\nforged=1 \\\"\r\t\u001b[31m\u007f\u0085\u2028é" alpn="" "#
            ),
            "{text}"
        );
        let parsed = parse_logfmt(&text);
        assert_eq!(parsed["sni"], HOSTILE);
        assert_eq!(parsed["alpn"], "");
        assert_eq!(parsed["end"], "client_close");
        assert!(!parsed.contains_key("forged"));
    }

    #[test]
    fn logfmt_leaves_safe_values_bare() {
        let mut out = Vec::new();
        logfmt_str(&mut out, r"a\b.example:443/é").expect("writing into a Vec");
        assert_eq!(out, r"a\b.example:443/é".as_bytes());
    }

    #[test]
    fn json_escapes_hostile_sni_and_parses_back() {
        for entry in [full(), minimal_error(), hostile()] {
            let text = line(LogFormat::Json, &entry);
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(v["time"], "2026-11-26T20:41:03.123Z");
            assert_eq!(v["client"], entry.client.to_string());
            assert_eq!(v["service"], entry.service);
            assert_eq!(
                v.get("server").and_then(|s| s.as_str()),
                entry.server.map(|s| s.to_string()).as_deref()
            );
            assert_eq!(v.get("sni").and_then(|s| s.as_str()), entry.sni);
            assert_eq!(v.get("alpn").and_then(|s| s.as_str()), entry.alpn);
            assert_eq!(v["bytes_in"], entry.bytes_in);
            assert_eq!(v["bytes_out"], entry.bytes_out);
            assert_eq!(
                v["duration_ms"].as_f64(),
                Some(entry.duration.as_micros() as f64 / 1000.0)
            );
            assert_eq!(v["end"], entry.end.as_str());
            assert_eq!(v.get("error").and_then(|s| s.as_str()), entry.error);
        }
    }

    #[test]
    fn every_end_is_written() {
        for (end, text) in [
            (End::ClientClose, "client_close"),
            (End::ServerClose, "server_close"),
            (End::Timeout, "timeout"),
            (End::HandshakeTimeout, "handshake_timeout"),
            (End::ClientTruncated, "client_truncated"),
            (End::ServerTruncated, "server_truncated"),
            (End::ClientReset, "client_reset"),
            (End::ServerReset, "server_reset"),
            (End::ClientError, "client_error"),
            (End::ServerError, "server_error"),
            (End::IpLimit, "ip_limit"),
            (End::Shutdown, "shutdown"),
        ] {
            assert_eq!(End::ALL[end as usize], end);
            let entry = Entry { end, ..full() };
            assert!(line(LogFormat::Logfmt, &entry).contains(&format!(" end={text}\n")));
            assert!(line(LogFormat::Json, &entry).contains(&format!(r#","end":"{text}"}}"#)));
        }
    }

    /// A strict reader of what `logfmt` writes: bare values end at a space, quoted ones undo the
    /// escapes. Panics on anything else, so a quoting mistake fails the test.
    fn parse_logfmt(line: &str) -> HashMap<String, String> {
        let line = line.strip_suffix('\n').expect("line ends with a newline");
        let mut fields = HashMap::new();
        let mut chars = line.chars().peekable();
        while chars.peek().is_some() {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next().expect("unterminated quoted value") {
                        '"' => break,
                        '\\' => match chars.next().expect("dangling backslash") {
                            'n' => value.push('\n'),
                            'r' => value.push('\r'),
                            't' => value.push('\t'),
                            'u' => {
                                let hex: String = chars.by_ref().take(4).collect();
                                let code = u32::from_str_radix(&hex, 16).expect("hex escape");
                                value.push(char::from_u32(code).expect("a character"));
                            }
                            c => value.push(c),
                        },
                        c => value.push(c),
                    }
                }
                assert!(
                    matches!(chars.next(), None | Some(' ')),
                    "junk after a quoted value"
                );
            } else {
                value = chars.by_ref().take_while(|&c| c != ' ').collect();
            }
            assert!(
                fields.insert(key.clone(), value).is_none(),
                "duplicate key {key}"
            );
        }
        fields
    }
}
