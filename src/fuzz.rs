//! Entry points of the fuzz targets (`fuzz/`, run with `cargo +nightly fuzz run TARGET`): each
//! takes arbitrary bytes and drives one parser that faces untrusted input the way the proxy
//! does. They must never panic, loop or allocate without bound, whatever the bytes. The corpus
//! under `fuzz/corpus/` is replayed through the same functions by `tests/fuzz_corpus.rs` on the
//! stable toolchain, so every case a fuzzer once found keeps being checked.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

use crate::tls::accept::HelloParser;
use crate::tls::certs::TlsCert;
use crate::tls::server::SniResolver;

/// The configuration loader on `data` as a file's text (invalid UTF-8 replaced): it must either
/// build a `Config` whose summary renders, or report problems that each render.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match crate::config::parse_offline(&text, Path::new("/nonexistent/fuzz.toml")) {
        Ok(config) => {
            let _ = config.summary();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The client's first bytes as a TLS service receives them: `data[0]` picks the size of the
/// pieces the rest arrives in (1 to 256 bytes, as a network would split them). Once a
/// ClientHello is accepted, its SNI picks a certificate as the proxy's resolver does, and the
/// handshake goes on with whatever bytes followed the hello.
pub fn client_hello(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(split) + 1;
    let mut parser = HelloParser::default();
    for (i, chunk) in rest.chunks(piece).enumerate() {
        match parser.feed(chunk) {
            Ok(Some((accepted, used))) => {
                let hello = accepted.client_hello();
                let sni = hello.server_name().map(str::to_owned);
                let _alpn: Vec<Vec<u8>> = hello
                    .alpn()
                    .map(|list| list.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default();
                let (resolver, config) = front();
                let _ = resolver.select(sni.as_deref());
                if let Ok(mut conn) = accepted.into_connection(config.clone()) {
                    let mut after = chunk[used..].to_vec();
                    for later in rest.chunks(piece).skip(i + 1) {
                        after.extend_from_slice(later);
                    }
                    feed_connection(&mut conn, &after);
                }
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

/// Hands what followed the hello to the accepted connection, as `TlsStream` does.
fn feed_connection(conn: &mut ServerConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match conn.read_tls(&mut bytes) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if conn.process_new_packets().is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        while matches!(conn.reader().read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// A service's front: a resolver over two generated certificates (one a wildcard) and the server
/// configuration that uses it, made once.
fn front() -> &'static (Arc<SniResolver>, Arc<ServerConfig>) {
    static FRONT: OnceLock<(Arc<SniResolver>, Arc<ServerConfig>)> = OnceLock::new();
    FRONT.get_or_init(|| {
        let certs = [
            generated(&["mail.example.com"]),
            generated(&["*.example.net"]),
        ];
        let resolver = Arc::new(SniResolver::new(&certs).expect("two certificates"));
        let ticketer = crate::tls::server::shared_ticketer().expect("ticketer");
        let config =
            crate::tls::server::service_config(resolver.clone(), ticketer).expect("server config");
        (resolver, Arc::new(config))
    })
}

fn generated(names: &[&str]) -> TlsCert {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let signer = crate::tls::provider()
        .key_provider
        .load_private_key(der)
        .expect("signing key");
    TlsCert {
        certificate: Default::default(),
        key: Default::default(),
        certified: Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            signer,
        )),
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

/// The admin API's request reader on `data` as one connection's bytes, arriving in pieces whose
/// size `data[0]` picks: it must return a request or an error, never hang or panic.
pub fn admin_request(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut stream = Pieces {
        data: rest,
        piece: usize::from(split) + 1,
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    let _ = crate::admin::http::read_request(&mut stream, deadline, &mut |_| Ok(()));
}

/// A reader that hands out `data` at most `piece` bytes at a time, then EOF.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.piece.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
