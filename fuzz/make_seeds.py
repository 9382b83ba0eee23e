#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz corpus (fuzz/corpus/<target>/seed-*).

Run from the repository root: python3 fuzz/make_seeds.py. Seeds are the starting points;
the fuzzer's own finds are added beside them (minimised with `cargo fuzz cmin`). Every file
of the corpus is replayed by tests/fuzz_corpus.rs.

- config: the configuration fixtures and examples, as they are.
- client_hello: real ClientHellos made by Python's TLS stack (OpenSSL) with several SNIs, ALPN
  lists and version ranges, each behind a byte choosing the size of the pieces they arrive in,
  plus an SSLv2-style hello, an HTTP request and a record announcing 16 MiB.
- admin_request: admin API requests, well formed and not.
"""

import pathlib
import shutil
import ssl

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    path = CORPUS / target / f"seed-{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def client_hello(sni, alpn, minimum, maximum):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = minimum
    ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def main():
    for sub in ("config", "client_hello", "admin_request"):
        for old in (CORPUS / sub).glob("seed-*"):
            old.unlink()

    for path in sorted((ROOT / "tests" / "fixtures" / "config").rglob("*.toml")):
        write("config", f"{path.parent.name}-{path.name}", path.read_bytes())
    for path in sorted((ROOT / "examples").glob("*.toml")):
        write("config", f"example-{path.name}", path.read_bytes())

    v = ssl.TLSVersion
    hellos = {
        "tls13-sni-h2": ("mail.example.com", ["h2", "http/1.1"], v.TLSv1_3, v.TLSv1_3),
        "tls12-13-outlook": ("autodiscover.example.com", None, v.TLSv1_2, v.TLSv1_3),
        "tls12-wildcard": ("owa.example.net", ["http/1.1"], v.TLSv1_2, v.TLSv1_2),
        "no-sni": (None, ["h2"], v.TLSv1_2, v.TLSv1_3),
    }
    for name, (sni, alpn, lo, hi) in hellos.items():
        hello = client_hello(sni, alpn, lo, hi)
        for split in (0, 6, 255):
            write("client_hello", f"{name}-split{split + 1}", bytes([split]) + hello)
    write("client_hello", "sslv2", b"\xff\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + b"\x00" * 37)
    write("client_hello", "http", b"\x10GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    write("client_hello", "huge-record", b"\xff\x16\x03\x01\xff\xff\x01\xff\xff\xff" + b"A" * 2000)

    requests = {
        "metrics": b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n\r\n",
        "drain": b"POST /api/services/web/servers/10.0.0.1:443/drain HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nAuthorization: Bearer abcdefabcdefabcdef\r\n\r\n{}",
        "address": b"POST /api/services/web/address HTTP/1.1\r\nHost: localhost\r\nContent-Length: 14\r\n\r\n127.0.0.1:8443",
        "chunked": b"POST /api/reload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "http10": b"GET /stats HTTP/1.0\r\n\r\n",
        "two-lengths": b"POST /api/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "percent": b"GET /api/services/we%2Fird%00 HTTP/1.1\r\nHost: a\r\n\r\n",
    }
    for name, request in requests.items():
        for split in (0, 254):
            write("admin_request", f"{name}-split{split + 1}", bytes([split]) + request)


if __name__ == "__main__":
    main()
