//! A strict, small HTTP/1.1 request parser (on `httparse`) and response writer for the admin
//! listener.
//!
//! The admin API is for operators and scrapers, never for arbitrary traffic, so the parser takes
//! only what it needs and refuses the rest with a status and a message that says what was wrong:
//! origin-form targets, `Content-Length` bodies (no chunked encoding), lines ended by CRLF, header
//! names that are tokens and values of visible ASCII, no obsolete line folding. `httparse` reads
//! the grammar; the checks it leaves to its caller (bare LF, bytes above ASCII, one Host, the
//! length) are made here. Sizes are bounded ([`MAX_HEAD`], [`MAX_BODY`], [`MAX_HEADERS`]) and so is
//! the time a client may take ([`read_request`]).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// The most bytes of request line plus headers, blank line included. A browser's request is
/// under 1 KiB; 8 KiB is what most servers allow and leaves room for a long bearer token.
pub const MAX_HEAD: usize = 8 * 1024;

/// The largest request body. The only bodies the API takes are a listen address or a small JSON
/// object; 64 KiB bounds the memory one connection can make the admin thread hold.
pub const MAX_BODY: usize = 64 * 1024;

/// The most header lines a request may have.
pub const MAX_HEADERS: usize = 64;

/// Bytes asked of the socket per read: one page, more than a whole browser request.
const READ_CHUNK: usize = 4096;

/// A parsed request. Header names are lower-cased; the target is split at `?` and not decoded.
/// Its `Debug` form hides the value of `Authorization`, so a logged request never shows a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The path part of the target, still percent-encoded, starting with `/`.
    pub path: String,
    /// What followed the first `?`, if there was one.
    pub query: Option<String>,
    /// `(name, value)` in the order received; names lower-cased, values without surrounding blanks.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; empty without that header).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let shown = if n == "authorization" {
                    "(hidden)"
                } else {
                    v.as_str()
                };
                (n.as_str(), shown)
            })
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Request {
    /// The value of the first header called `name` (give it in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many headers called `name` (lower case) the request has.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// Why a request was refused; each carries the status to answer and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Malformed input (400): the message names what and where.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request line and headers passed [`MAX_HEAD`] bytes (431).
    #[error("request line and headers exceed {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The announced body passed [`MAX_BODY`] bytes (413).
    #[error("request body of {0} bytes exceeds the limit of {MAX_BODY} bytes")]
    BodyTooLarge(u64),
    /// A body sent without `Content-Length` (chunked) (411).
    #[error("send the body with Content-Length; Transfer-Encoding is not supported")]
    LengthRequired,
    /// An HTTP version other than 1.0 or 1.1 (505).
    #[error("HTTP version {0} is not supported; use HTTP/1.1")]
    Version(String),
    /// The client was too slow to send its request (408).
    #[error("request not received in time")]
    Timeout,
    /// The client closed before a whole request arrived; nothing is answered.
    #[error("connection closed after {0} bytes, before the request was complete")]
    Closed(usize),
    /// The socket failed; nothing is answered.
    #[error("reading the request: {0}")]
    Io(String),
}

impl HttpError {
    /// The status to answer with, or `None` when the connection is gone and nothing can be sent.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::BadRequest(_) => Some(400),
            HttpError::HeadTooLarge => Some(431),
            HttpError::BodyTooLarge(_) => Some(413),
            HttpError::LengthRequired => Some(411),
            HttpError::Version(_) => Some(505),
            HttpError::Timeout => Some(408),
            HttpError::Closed(_) | HttpError::Io(_) => None,
        }
    }
}

fn bad(msg: impl Into<String>) -> HttpError {
    HttpError::BadRequest(msg.into())
}

/// What [`parse_head`] found in the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The blank line that ends the headers has not arrived yet.
    Partial,
    /// A complete head: the request (without its body), the head's length in bytes, and the
    /// body length announced by `Content-Length` (0 without it).
    Complete(Request, usize, usize),
}

/// Parses the request line and headers at the start of `buf`.
///
/// Returns [`Head::Partial`] while no blank line has arrived and `buf` is under [`MAX_HEAD`]; an
/// error as soon as the bytes received cannot be the start of a valid request.
pub fn parse_head(buf: &[u8]) -> Result<Head, HttpError> {
    check_lines(buf)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(buf).map_err(|e| refusal(buf, e))?;
    // Once the request line is whole, its target is judged, complete head or not.
    if parsed.version.is_some() {
        check_target(parsed.path.unwrap_or_default())?;
    }
    let head_len = match status {
        httparse::Status::Complete(len) if len > MAX_HEAD => return Err(HttpError::HeadTooLarge),
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if buf.len() >= MAX_HEAD => return Err(HttpError::HeadTooLarge),
        httparse::Status::Partial => return Ok(Head::Partial),
    };
    let target = parsed.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut request = Request {
        method: parsed.method.unwrap_or_default().to_string(),
        path,
        query,
        headers: Vec::with_capacity(parsed.headers.len()),
        body: Vec::new(),
    };
    for h in parsed.headers.iter() {
        if let Some(&b) = h.value.iter().find(|&&b| !is_visible_or_blank(b)) {
            return Err(bad(format!(
                "byte 0x{b:02x} in the value of header {:?}",
                h.name
            )));
        }
        // Visible ASCII now, so nothing is lost.
        let value = String::from_utf8_lossy(trim_blanks(h.value)).into_owned();
        request.headers.push((h.name.to_ascii_lowercase(), value));
    }
    if request.header("transfer-encoding").is_some() {
        return Err(HttpError::LengthRequired);
    }
    let body_len = content_length(&request)?;
    if parsed.version == Some(1) && request.header_count("host") != 1 {
        return Err(bad("HTTP/1.1 needs exactly one Host header"));
    }
    request.body.reserve_exact(body_len);
    Ok(Head::Complete(request, head_len, body_len))
}

/// What `httparse` leaves to its caller, checked on every prefix: no blank line before the
/// request line, no line ended by a bare LF, nothing but visible ASCII in the request line.
fn check_lines(buf: &[u8]) -> Result<(), HttpError> {
    if matches!(buf.first(), Some(b'\r' | b'\n')) {
        return Err(bad("an empty line before the request line"));
    }
    let head = match find(buf, b"\r\n\r\n") {
        Some(end) => &buf[..end + 4],
        None => buf,
    };
    let mut line_no = 1;
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            if i == 0 || head[i - 1] != b'\r' {
                return Err(bad(format!(
                    "line {line_no} ends with a bare LF; HTTP lines end with CRLF"
                )));
            }
            line_no += 1;
        } else if line_no == 1 && b != b'\r' && !(0x20..0x7f).contains(&b) {
            return Err(bad(format!(
                "byte 0x{b:02x} in the request line; this is not an HTTP/1.1 request"
            )));
        }
    }
    Ok(())
}

/// The error for what `httparse` refused, in words.
fn refusal(buf: &[u8], e: httparse::Error) -> HttpError {
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    match e {
        httparse::Error::Version => {
            let parts: Vec<&str> = line.split(' ').collect();
            let version = parts.last().copied().unwrap_or_default();
            let b = version.as_bytes();
            let well_formed = b.len() == 8
                && version.starts_with("HTTP/")
                && b[5].is_ascii_digit()
                && b[6] == b'.'
                && b[7].is_ascii_digit();
            if parts.len() == 3 && well_formed {
                HttpError::Version(version.to_string())
            } else {
                bad(format!(
                    "request line {line:?} is not `METHOD /path HTTP/1.1` (single spaces)"
                ))
            }
        }
        httparse::Error::Token => bad(format!("request line {line:?}: the method is not a token")),
        httparse::Error::NewLine => bad(format!(
            "request line {line:?} is not `METHOD /path HTTP/1.1` (single spaces)"
        )),
        httparse::Error::HeaderName => bad(
            "a header line is not `Name: value` (a name that is a token, no blank before the \
             colon, no folded lines)",
        ),
        httparse::Error::HeaderValue => bad("a header value holds a control byte"),
        httparse::Error::TooManyHeaders => HttpError::HeadTooLarge,
        httparse::Error::Status => bad("malformed request"),
    }
}

/// The request target: origin form only, visible ASCII, no fragment.
fn check_target(target: &str) -> Result<(), HttpError> {
    if !target.starts_with('/') {
        return Err(bad(format!(
            "request target {target:?} must be a path starting with '/'"
        )));
    }
    if !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(bad(
            "the request target holds bytes that are not visible ASCII",
        ));
    }
    if target.contains('#') {
        return Err(bad("the request target holds a fragment ('#')"));
    }
    Ok(())
}

/// Reads one request from `stream`: the head, then `Content-Length` bytes of body, however the
/// bytes are split over reads. The whole request must arrive before `deadline`; each read waits
/// at most until then (the stream's own read timeout may be shorter).
pub fn read_request<S: Read + ?Sized>(
    stream: &mut S,
    deadline: Instant,
    set_timeout: &mut dyn FnMut(Duration) -> io::Result<()>,
) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut chunk = [0u8; READ_CHUNK];
    let (mut request, head_len, body_len) = loop {
        if let Head::Complete(r, h, b) = parse_head(&buf)? {
            break (r, h, b);
        }
        let want = (MAX_HEAD - buf.len()).min(READ_CHUNK);
        let n = read_some(stream, &mut chunk[..want], deadline, set_timeout)?;
        if n == 0 {
            return Err(HttpError::Closed(buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut body = buf.split_off(head_len);
    if body.len() > body_len {
        return Err(bad(
            "more bytes than Content-Length announced (pipelining is not supported)",
        ));
    }
    while body.len() < body_len {
        let want = (body_len - body.len()).min(READ_CHUNK);
        let n = read_some(stream, &mut chunk[..want], deadline, set_timeout)?;
        if n == 0 {
            return Err(HttpError::Closed(head_len + body.len()));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    request.body = body;
    Ok(request)
}

/// One read, retried on `EINTR`, bounded by `deadline`.
fn read_some<S: Read + ?Sized>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: Instant,
    set_timeout: &mut dyn FnMut(Duration) -> io::Result<()>,
) -> Result<usize, HttpError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        set_timeout(left).map_err(|e| HttpError::Io(e.to_string()))?;
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::Timeout)
            }
            Err(e) => return Err(HttpError::Io(e.to_string())),
        }
    }
}

fn content_length(request: &Request) -> Result<usize, HttpError> {
    let mut length: Option<u64> = None;
    for (_, value) in request
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
    {
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("Content-Length {value:?} is not a number")));
        }
        let n: u64 = value
            .parse()
            .map_err(|_| bad(format!("Content-Length {value:?} is not a number")))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    match length {
        Some(n) if n > MAX_BODY as u64 => Err(HttpError::BodyTooLarge(n)),
        // At most MAX_BODY, so it fits in usize.
        Some(n) => Ok(n as usize),
        None => Ok(0),
    }
}

fn is_visible_or_blank(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || b == b'\t'
}

fn trim_blanks(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes `%XX` escapes in one path segment; refuses a bad escape or a result that is not UTF-8.
pub fn percent_decode(segment: &str) -> Result<String, HttpError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("bad percent escape in path segment {segment:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| bad(format!("path segment {segment:?} does not decode to UTF-8")))
}

/// A response: status, content type, body and any extra headers. Every response is sent with
/// `Content-Length`, `Cache-Control: no-store` and `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// Headers besides the ones every response gets (`Allow`, `Location`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// `Content-Type` of JSON answers.
pub const JSON: &str = "application/json";
/// `Content-Type` of plain-text answers.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// `Content-Type` of HTML pages.
pub const HTML: &str = "text/html; charset=utf-8";

impl Response {
    /// A response with `status`, `content_type` and `body`, and no extra headers.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (the name as it should be written).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the response; without the body when `head_only` (an answer to `HEAD`), though
    /// `Content-Length` still tells the body's length.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W, head_only: bool) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            // Values come from this crate, but a header must never be split by a stray newline.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        w.write_all(&out)?;
        w.flush()
    }
}

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests;
