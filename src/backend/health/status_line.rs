//! The HTTP/1.x status line of a health check's answer: `HTTP/1.1 200 OK\r\n`, parsed with
//! `httparse`.
//!
//! [`parse_status`] looks at the bytes received so far and says whether they already decide the
//! status code, need more bytes, or cannot be an HTTP response. It decides as early as the bytes
//! allow: a byte that breaks the grammar makes the answer invalid at once (an SSH banner or a TLS
//! alert is refused at its first byte), and the code is known as soon as the byte after its three
//! digits arrives. Interim `1xx` answers (`100 Continue`, `103 Early Hints`) are skipped up to the
//! blank line that ends them. Never panics, whatever the bytes.

/// `HTTP/d.d ddd` followed by a space or the line end: the shortest prefix that decides.
const DECIDING_LEN: usize = 13;

/// Headers an interim answer may carry before it is refused.
const MAX_HEADERS: usize = 64;

/// What the bytes received so far say about the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusLine {
    /// Not enough bytes yet (the bytes so far are a valid start).
    Incomplete,
    /// The final status code.
    Status(u16),
    /// Not an HTTP/1.x response; the reason, in words.
    Invalid(&'static str),
}

/// Parses the start of an HTTP/1.x response, skipping interim `1xx` responses; see the module
/// documentation.
pub fn parse_status(mut buf: &[u8]) -> StatusLine {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let parsed = response.parse(buf);
        let (status, code) = match (parsed, response.code) {
            (Err(httparse::Error::Version), _) => {
                return StatusLine::Invalid("not an HTTP response")
            }
            (Err(httparse::Error::TooManyHeaders), _) => {
                return StatusLine::Invalid("more than 64 headers in an interim answer")
            }
            (Err(_), None) => return StatusLine::Invalid("malformed HTTP status line"),
            (Err(_), Some(_)) if buf.len() <= DECIDING_LEN => {
                return StatusLine::Invalid("malformed HTTP status line")
            }
            (Err(_), Some(_)) => return StatusLine::Invalid("malformed HTTP response head"),
            // The three digits are there, but a fourth could still make them invalid.
            (Ok(httparse::Status::Partial), Some(_)) if buf.len() < DECIDING_LEN => {
                return StatusLine::Incomplete
            }
            (Ok(httparse::Status::Partial), None) => return StatusLine::Incomplete,
            (Ok(status), Some(code)) => (status, code),
            (Ok(httparse::Status::Complete(_)), None) => {
                return StatusLine::Invalid("malformed HTTP status line")
            }
        };
        if code < 100 {
            return StatusLine::Invalid("HTTP status code below 100");
        }
        // 101 Switching Protocols is final (and wrong for a health check); other 1xx are interim.
        if !(100..200).contains(&code) || code == 101 {
            return StatusLine::Status(code);
        }
        match status {
            httparse::Status::Complete(len) => buf = &buf[len..],
            httparse::Status::Partial => return StatusLine::Incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from nginx 1.22.1 with the health checker's exact request (GET of a static file).
    const NGINX_200: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 18:55:48 GMT\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nLast-Modified: Thu, 26 Nov 2026 18:55:47 GMT\r\nConnection: close\r\nETag: \"6b0880b3-3\"\r\nAccept-Ranges: bytes\r\n\r\nok\n";
    /// Captured from nginx 1.22.1, a missing path.
    const NGINX_404: &[u8] = b"HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 18:55:48 GMT\r\nContent-Type: text/html\r\nContent-Length: 153\r\nConnection: close\r\n\r\n<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
    /// Captured from HAProxy 2.6, a backend without servers.
    const HAPROXY_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 107\r\ncache-control: no-cache\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";
    /// Captured from Python 3.11's `http.server` (`send_error(503)`), an HTTP/1.0 answer.
    const PYTHON_503: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\nServer: BaseHTTP/0.6 Python/3.11.7\r\nDate: Thu, 26 Nov 2026 18:55:53 GMT\r\nConnection: close\r\nContent-Type: text/html;charset=utf-8\r\nContent-Length: 367\r\n\r\n<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        <p>Error code: 503</p>\n        <p>Message: Service Unavailable.</p>\n        <p>Error code explanation: 503 - The server cannot process the request due to a high load.</p>\n    </body>\n</html>\n";
    /// An interim `100 Continue` and `103 Early Hints` before the final answer (as IIS and
    /// h2o send them), with bare `\n` line ends in the second.
    const INTERIM_THEN_200: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\nLink: </s.css>; rel=preload\n\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    /// No reason phrase, bare `\n`: allowed by RFC 9112 and sent by small embedded servers.
    const NO_REASON: &[u8] = b"HTTP/1.1 204\nContent-Length: 0\n\n";

    /// Checks `parse_status` on every prefix of `response`: each is `Incomplete` until the
    /// deciding byte, then `Status(code)` for good; never `Invalid`.
    fn every_prefix_gives(response: &[u8], code: u16, decided_at: usize) {
        for len in 0..=response.len() {
            let got = parse_status(&response[..len]);
            let want = if len < decided_at {
                StatusLine::Incomplete
            } else {
                StatusLine::Status(code)
            };
            assert_eq!(got, want, "prefix of {len} bytes: {:?}", &response[..len]);
        }
    }

    #[test]
    fn captured_answers_on_every_prefix() {
        every_prefix_gives(NGINX_200, 200, DECIDING_LEN);
        every_prefix_gives(NGINX_404, 404, DECIDING_LEN);
        every_prefix_gives(HAPROXY_503, 503, DECIDING_LEN);
        every_prefix_gives(PYTHON_503, 503, DECIDING_LEN);
        every_prefix_gives(NO_REASON, 204, DECIDING_LEN);
        let final_at = INTERIM_THEN_200
            .windows(12)
            .position(|w| w == b"HTTP/1.1 200")
            .expect("final status line");
        every_prefix_gives(INTERIM_THEN_200, 200, final_at + DECIDING_LEN);
    }

    /// Each prefix of `garbage` is `Incomplete` until byte `bad_at` arrives, then `Invalid`.
    fn refused_from(garbage: &[u8], bad_at: usize) {
        for len in 0..=garbage.len() {
            let got = parse_status(&garbage[..len]);
            if len <= bad_at {
                assert_eq!(
                    got,
                    StatusLine::Incomplete,
                    "prefix of {len} bytes of {garbage:?}"
                );
            } else {
                assert!(
                    matches!(got, StatusLine::Invalid(_)),
                    "prefix of {len} bytes of {garbage:?}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_refused_at_the_first_wrong_byte() {
        refused_from(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", 0);
        // A TLS alert record (handshake_failure), what a TLS port answers to plain HTTP.
        refused_from(b"\x15\x03\x01\x00\x02\x02\x28", 0);
        refused_from(b"http/1.1 200 OK\r\n", 0);
        refused_from(b"HTTP/1.1 2000 OK\r\n", 12);
        refused_from(b"HTTP/1.1 20 OK\r\n", 11);
        refused_from(b"HTTP/1.1  200 OK\r\n", 9);
        refused_from(b"HTTP/11 200 OK\r\n", 6);
        refused_from(b"HTTP/1.1 OK\r\n", 9);
        refused_from(b"\x00\xff\xfe garbage", 0);
    }

    #[test]
    fn interim_answer_without_reason_phrase() {
        assert_eq!(
            parse_status(b"HTTP/1.1 100\n\nHTTP/1.1 200 OK\r\n"),
            StatusLine::Status(200)
        );
    }

    #[test]
    fn empty_and_odd_inputs() {
        assert_eq!(parse_status(b""), StatusLine::Incomplete);
        assert!(matches!(
            parse_status(b"HTTP/1.1 099 Low\r\n"),
            StatusLine::Invalid(_)
        ));
        assert_eq!(
            parse_status(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            StatusLine::Status(101)
        );
        // An interim answer whose head never ends waits for more bytes (the caller's read
        // limit ends it).
        assert_eq!(
            parse_status(b"HTTP/1.1 100 Continue\r\nX: y\r\n"),
            StatusLine::Incomplete
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 999 Odd\r\n"),
            StatusLine::Status(999)
        );
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every 1- and 2-byte input, and every byte at every position of a valid line.
        for a in 0..=u8::MAX {
            let _ = parse_status(&[a]);
            for b in 0..=u8::MAX {
                let _ = parse_status(&[a, b]);
            }
        }
        let mut line = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..line.len() {
            let keep = line[i];
            for b in 0..=u8::MAX {
                line[i] = b;
                for len in 0..=line.len() {
                    let _ = parse_status(&line[..len]);
                }
            }
            line[i] = keep;
        }
    }
}
