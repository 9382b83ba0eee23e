//! Tests of the admin HTTP parser and response writer.

use super::*;

const GET: &[u8] = b"GET /api/services?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n\
    User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// Request head as Chromium sent it to the stats page (captured with `nc -l`).
const CHROMIUM: &[u8] =
    b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nConnection: keep-alive\r\n\
    Upgrade-Insecure-Requests: 1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
    (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36\r\nAccept: text/html,application/\
    xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\nSec-Fetch-Site: none\r\n\
    Sec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\n\
    Accept-Encoding: gzip, deflate, br\r\n\r\n";

const POST: &[u8] = b"POST /api/services/web/address HTTP/1.1\r\nHost: x\r\n\
    content-LENGTH: 14\r\n\r\n127.0.0.1:9443";

fn complete(buf: &[u8]) -> (Request, usize, usize) {
    match parse_head(buf) {
        Ok(Head::Complete(r, h, b)) => (r, h, b),
        other => panic!("expected a complete head, got {other:?}"),
    }
}

fn err(buf: &[u8]) -> HttpError {
    match parse_head(buf) {
        Err(e) => e,
        other => panic!("expected an error for {:?}, got {other:?}", buf),
    }
}

/// Reads from the slices in turn, one slice per `read` call: a body split over reads.
struct Chunks(Vec<Vec<u8>>);

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Ok(0);
        }
        let chunk = &mut self.0[0];
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        chunk.drain(..n);
        if chunk.is_empty() {
            self.0.remove(0);
        }
        Ok(n)
    }
}

fn read_chunks(chunks: Vec<Vec<u8>>) -> Result<Request, HttpError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    read_request(&mut Chunks(chunks), deadline, &mut |_| Ok(()))
}

#[test]
fn parses_a_get() {
    let (r, head, body) = complete(GET);
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/api/services");
    assert_eq!(r.query.as_deref(), Some("x=1"));
    assert_eq!(r.header("host"), Some("127.0.0.1:9090"));
    assert_eq!(r.header("user-agent"), Some("curl/8.5.0"));
    assert_eq!((head, body), (GET.len(), 0));
}

#[test]
fn header_names_are_case_insensitive_and_values_trimmed() {
    let (r, _, body) = complete(POST);
    assert_eq!(r.header("content-length"), Some("14"));
    assert_eq!(body, 14);
    let (r, _, _) = complete(b"GET / HTTP/1.1\r\nHOST:   \t h \t\r\n\r\n");
    assert_eq!(r.header("host"), Some("h"));
}

/// Every prefix of real requests is either partial or (at the end) complete, never an error:
/// the parser does not refuse a request because of how it was split.
#[test]
fn every_prefix_of_real_requests_is_partial() {
    for full in [GET, CHROMIUM, POST] {
        let head_end = find(full, b"\r\n\r\n").unwrap() + 4;
        for n in 0..head_end {
            assert_eq!(
                parse_head(&full[..n]),
                Ok(Head::Partial),
                "prefix of {n} bytes"
            );
        }
        assert!(matches!(
            parse_head(&full[..head_end]),
            Ok(Head::Complete(..))
        ));
    }
}

#[test]
fn chromium_request_parses() {
    let (r, _, _) = complete(CHROMIUM);
    assert_eq!(r.path, "/stats");
    assert_eq!(r.header("sec-fetch-mode"), Some("navigate"));
}

#[test]
fn body_split_over_reads_is_reassembled() {
    // One byte per read.
    let r = read_chunks(POST.iter().map(|&b| vec![b]).collect()).unwrap();
    assert_eq!(r.body, b"127.0.0.1:9443");

    // Head and the start of the body in one read, the rest in two more.
    let split = find(POST, b"\r\n\r\n").unwrap() + 6;
    let r = read_chunks(vec![
        POST[..split].to_vec(),
        POST[split..split + 3].to_vec(),
        POST[split + 3..].to_vec(),
    ])
    .unwrap();
    assert_eq!(r.body, b"127.0.0.1:9443");
}

#[test]
fn closed_early_is_reported_not_answered() {
    let e = read_chunks(vec![POST[..POST.len() - 1].to_vec()]).unwrap_err();
    assert_eq!(e, HttpError::Closed(POST.len() - 1));
    assert_eq!(e.status(), None);
    let e = read_chunks(vec![b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec()]).unwrap_err();
    assert!(matches!(e, HttpError::Closed(_)));
}

#[test]
fn extra_bytes_after_the_body_are_refused() {
    let mut more = POST.to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let e = read_chunks(vec![more]).unwrap_err();
    assert_eq!(e.status(), Some(400));
}

#[test]
fn garbage_is_refused_at_once() {
    // A TLS ClientHello sent to the plain-text port: refused on its first bytes.
    let e = err(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ]);
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("0x16"), "{e}");
    for line in [
        &b"GET\r\n"[..],
        b"GET /  HTTP/1.1\r\n",
        b"GET http://x/ HTTP/1.1\r\n",
        b"GET * HTTP/1.1\r\n",
        b"G(T / HTTP/1.1\r\n",
        b"GET / HTTP/1.1 extra\r\n",
        b"GET / HTTX/1.1\r\n",
        b"GET /#frag HTTP/1.1\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\n",
        b"\r\n",
    ] {
        assert_eq!(
            err(line).status(),
            Some(400),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn other_versions_get_505_and_http10_needs_no_host() {
    assert_eq!(err(b"GET / HTTP/2.0\r\n").status(), Some(505));
    assert_eq!(err(b"GET / HTTP/0.9\r\n\r\n").status(), Some(505));
    let (r, _, _) = complete(b"GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(r.path, "/metrics");
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n").status(), Some(400));
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status(),
        Some(400)
    );
}

#[test]
fn missing_cr_is_refused() {
    let e = err(b"GET / HTTP/1.1\n");
    assert!(e.to_string().contains("bare LF"), "{e}");
    let e = err(b"GET / HTTP/1.1\r\nHost: x\n\r\n\r\n");
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("line 2"), "{e}");
    // No line ends at all: waits, then refuses at the size limit instead of growing forever.
    let mut long = b"GET /".to_vec();
    long.resize(MAX_HEAD - 1, b'a');
    assert_eq!(parse_head(&long), Ok(Head::Partial));
    long.push(b'a');
    assert_eq!(err(&long), HttpError::HeadTooLarge);
}

#[test]
fn bad_headers_are_refused() {
    for head in [
        &b"GET / HTTP/1.1\r\nHost x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: \xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        assert_eq!(
            err(head).status(),
            Some(400),
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
    // The same length twice is harmless.
    let (_, _, n) =
        complete(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n");
    assert_eq!(n, 2);
}

#[test]
fn oversized_input_is_refused() {
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(MAX_HEAD, b'p');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(err(&head), HttpError::HeadTooLarge);
    assert_eq!(err(&head).status(), Some(431));

    let big = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    assert_eq!(
        err(big.as_bytes()),
        HttpError::BodyTooLarge(MAX_BODY as u64 + 1)
    );
    assert_eq!(err(big.as_bytes()).status(), Some(413));
    let max = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n");
    assert!(matches!(
        parse_head(max.as_bytes()),
        Ok(Head::Complete(_, _, MAX_BODY))
    ));

    let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(chunked).status(), Some(411));
}

#[test]
fn a_slow_client_times_out() {
    struct Stalled;
    impl Read for Stalled {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
    let e = read_request(
        &mut Stalled,
        Instant::now() + Duration::from_secs(5),
        &mut |_| Ok(()),
    );
    assert_eq!(e, Err(HttpError::Timeout));
    let e = read_request(&mut Chunks(vec![GET.to_vec()]), Instant::now(), &mut |_| {
        Ok(())
    });
    assert_eq!(e, Err(HttpError::Timeout));
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("%5B%3A%3A1%5D%3A80").unwrap(), "[::1]:80");
    assert_eq!(percent_decode("127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
    assert_eq!(percent_decode("caf%C3%A9").unwrap(), "café");
    for bad in ["%", "%4", "%zz", "%FF"] {
        assert_eq!(
            percent_decode(bad).unwrap_err().status(),
            Some(400),
            "{bad}"
        );
    }
}

#[test]
fn response_has_length_type_and_no_store() {
    let mut out = Vec::new();
    Response::new(405, JSON, "{}")
        .with_header("Allow", "GET, HEAD")
        .write_to(&mut out, false)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nCache-Control: no-store\r\nConnection: close\r\n\
         Allow: GET, HEAD\r\n\r\n{}"
    );
    let mut out = Vec::new();
    Response::new(200, TEXT, "hello")
        .with_header("X-Evil", "a\r\nInjected: 1")
        .write_to(&mut out, true)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("Content-Length: 5\r\nCache-Control: no-store\r\nConnection: close\r\nX-Evil: aInjected: 1\r\n\r\n"), "{text}");
}
