//! The memory cases of the hostile suite: what a never-reading client costs, and what an idle and
//! a busy connection cost, per mode.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use super::peers::{self, Behaviour};
use super::proxy::{free_addr, Proxy};
use super::scenarios::{settle, Ctx, Row};

/// Clients that send requests and never read.
pub fn no_read(ctx: &Ctx) -> Row {
    let n = ctx.scale / 2;
    let big = peers::server(Behaviour::Big, None);
    let tls_big = peers::server(Behaviour::Big, Some(ctx.pki.server.clone()));
    let (off, re, pt) = (free_addr(), free_addr(), free_addr());
    let services = ctx.tls_service("off", off, "offload", big, "")
        + &ctx.tls_service("re", re, "reencrypt", tls_big, "")
        + &Ctx::plain_service("pt", pt, big, "");
    let mut figures = Vec::new();
    let mut held = true;
    let mut fds = Vec::new();
    for (mode, addr) in [("passthrough", pt), ("offload", off), ("reencrypt", re)] {
        // A fresh process per mode, as in `memory`.
        let proxy = Proxy::start(ctx.binary, &ctx.dir.join("no_read"), "", &services, None);
        let before = proxy.rss_kib();
        let fds_before = proxy.fds();
        let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
        for _ in 0..n {
            if mode == "passthrough" {
                if let Ok(mut s) = peers::connect_from(IpAddr::from([127, 0, 0, 1]), addr) {
                    let _ = s.write_all(&[b'\n'; 8]);
                    keep.push(Box::new(s));
                }
            } else if let Ok(mut s) = peers::tls(addr, ctx.pki) {
                let _ = s.write_all(&[b'\n'; 8]).and_then(|()| s.flush());
                keep.push(Box::new(s));
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        let per = proxy.rss_kib().saturating_sub(before) / keep.len().max(1) as u64;
        figures.push(format!("{mode} {per} KiB"));
        held &= per < 512;
        drop(keep);
        let after = settle(&proxy, fds_before);
        fds.push(format!("{mode} fds {fds_before} → {}", after.0));
        held &= after.0 <= fds_before;
    }
    Row {
        case: "never-reading clients",
        sent: format!("{n} clients per mode, each sending 8 requests for 1 MiB and reading nothing"),
        must: "RSS per connection bounded (the relay stops reading the server when the client's socket is full)",
        figures: format!("RSS per connection: {}; {}", figures.join(", "), fds.join(", ")),
        held,
    }
}

/// What an idle and a busy connection cost, per mode.
pub fn memory(ctx: &Ctx) -> Row {
    let idle_n = ctx.scale;
    let busy_n = ctx.scale / 10;
    let echo = peers::server(Behaviour::Echo, None);
    let tls_echo = peers::server(Behaviour::Echo, Some(ctx.pki.server.clone()));
    let (off, re, pt) = (free_addr(), free_addr(), free_addr());
    let services = ctx.tls_service("off", off, "offload", echo, "")
        + &ctx.tls_service("re", re, "reencrypt", tls_echo, "")
        + &Ctx::plain_service("pt", pt, echo, "");
    let mut figures = Vec::new();
    for (mode, addr) in [("passthrough", pt), ("offload", off), ("reencrypt", re)] {
        // A fresh process per mode and phase: freed memory stays resident in the allocator, and
        // would hide what the next measurement costs.
        let proxy = Proxy::start(ctx.binary, &ctx.dir.join("memory"), "", &services, None);
        // Idle: one 1 KiB round trip each, then nothing.
        let before = proxy.rss_kib();
        let mut idle: Vec<Box<dyn std::any::Any>> = Vec::new();
        for _ in 0..idle_n {
            let msg = [b'i'; 1024];
            let mut back = [0u8; 1024];
            if mode == "passthrough" {
                if let Ok(mut s) = peers::connect_from(IpAddr::from([127, 0, 0, 1]), addr) {
                    if s.write_all(&msg)
                        .and_then(|()| std::io::Read::read_exact(&mut s, &mut back))
                        .is_ok()
                    {
                        idle.push(Box::new(s));
                    }
                }
            } else if let Ok(mut s) = peers::tls(addr, ctx.pki) {
                if s.write_all(&msg)
                    .and_then(|()| s.flush())
                    .and_then(|()| std::io::Read::read_exact(&mut s, &mut back))
                    .is_ok()
                {
                    idle.push(Box::new(s));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        let idle_kib = proxy.rss_kib().saturating_sub(before) as f64 / idle.len().max(1) as f64;
        drop(idle);
        drop(proxy);
        let proxy = Proxy::start(ctx.binary, &ctx.dir.join("memory"), "", &services, None);
        // Busy: 64 KiB writes echoed back, continuously, for 2 s.
        let before = proxy.rss_kib();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..busy_n)
            .map(|_| {
                let stop = stop.clone();
                let client = ctx.pki.client.clone();
                std::thread::spawn(move || {
                    let chunk = vec![b'b'; 64 * 1024];
                    let mut back = vec![0u8; 64 * 1024];
                    let mut sock = peers::connect_from(IpAddr::from([127, 0, 0, 1]), addr).ok()?;
                    if mode == "passthrough" {
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            sock.write_all(&chunk).ok()?;
                            std::io::Read::read_exact(&mut sock, &mut back).ok()?;
                        }
                    } else {
                        let mut conn = rustls::ClientConnection::new(
                            client,
                            rustls::pki_types::ServerName::try_from(peers::NAME).ok()?,
                        )
                        .ok()?;
                        while conn.is_handshaking() {
                            conn.complete_io(&mut sock).ok()?;
                        }
                        let mut s = rustls::StreamOwned::new(conn, sock);
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            s.write_all(&chunk).ok()?;
                            s.flush().ok()?;
                            std::io::Read::read_exact(&mut s, &mut back).ok()?;
                        }
                    }
                    Some(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        let busy_kib = proxy.rss_kib().saturating_sub(before) as f64 / busy_n.max(1) as f64;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let ok = workers
            .into_iter()
            .filter_map(|w| w.join().ok().flatten())
            .count();
        figures.push(format!("{mode}: idle {idle_kib:.1} KiB, busy {busy_kib:.1} KiB ({ok}/{busy_n} busy clients ran)"));
        std::thread::sleep(Duration::from_millis(500));
    }
    Row {
        case: "memory per connection",
        sent: format!("per mode: {idle_n} connections after a 1 KiB echo, held idle; then {busy_n} connections echoing 64 KiB writes for 2 s"),
        must: "(figures for the README)",
        figures: figures.join("; "),
        held: true,
    }
}
