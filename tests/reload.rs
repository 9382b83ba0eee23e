//! Hot reload: 100 reloads under load refuse no connection and cut no transfer, and resources
//! come back; a bad file keeps the old configuration serving, on SIGHUP and through the API.

mod common;
mod ops_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ops_support::*;

const RELOADS: usize = 100;
/// Reloads during the warm-up, before the baseline is taken (even: ends on config A).
const WARM_RELOADS: usize = 10;

/// Config A: one service over two echo servers. Config B: other weights, a second service.
fn config(
    listen: SocketAddr,
    extra: SocketAddr,
    servers: &[SocketAddr],
    variant_b: bool,
) -> String {
    let mut toml = format!(
        "[global]\nworkers = 2\ndrain_timeout = \"5s\"\n\n\
         [[service]]\nname = \"test\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
         schedule = \"{}\"\n",
        if variant_b {
            "least-connections"
        } else {
            "round-robin"
        }
    );
    for (i, s) in servers.iter().enumerate() {
        let weight = if variant_b && i == 0 { 3 } else { 1 };
        toml.push_str(&format!(
            "\n[[service.server]]\naddress = \"{s}\"\nweight = {weight}\n"
        ));
    }
    if variant_b {
        toml.push_str(&format!(
            "\n[[service]]\nname = \"extra\"\nlisten = \"{extra}\"\nmode = \"passthrough\"\n\n\
             [[service.server]]\naddress = \"{}\"\n",
            servers[0]
        ));
    }
    toml
}

#[test]
fn hundred_reloads_under_load_refuse_nothing_and_cut_nothing() {
    let backends = [Backend::echo(), Backend::echo()];
    let servers: Vec<SocketAddr> = backends.iter().map(Backend::addr).collect();
    let (listen, extra) = (listen_addr(), listen_addr());
    let proxy = Proxy::start(&config(listen, extra, &servers, false));

    // Warm up with the same kind of load and a few reloads (the allocator keeps what it has
    // once used), then take the baseline.
    let warm_stop = Arc::new(AtomicBool::new(false));
    let (warm, h) = churn(listen, warm_stop.clone(), "warm");
    let warm_transfers: Vec<_> = (0..2)
        .map(|i| long_transfer(listen, warm_stop.clone(), 0xbeef + i))
        .collect();
    for i in 0..WARM_RELOADS {
        proxy.write_config(&config(listen, extra, &servers, i % 2 == 0));
        proxy.signal(libc::SIGHUP);
        assert!(proxy.wait_log_count("reload applied", i + 1, Duration::from_secs(20)));
    }
    while warm.ok.load(Ordering::Relaxed) < 200 {
        std::thread::sleep(Duration::from_millis(5));
    }
    warm_stop.store(true, Ordering::Relaxed);
    join(h, "warm-up");
    for t in warm_transfers {
        assert!(join(t, "warm-up transfer").intact);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (fds_before, rss_before) = (proxy.fd_count(), proxy.rss_kib());

    let stop = Arc::new(AtomicBool::new(false));
    let (churned, churner) = churn(listen, stop.clone(), "churn");
    let transfers: Vec<_> = (0..2)
        .map(|i| long_transfer(listen, stop.clone(), 0xfeed + i))
        .collect();
    let started = Instant::now();
    for i in 0..RELOADS {
        let variant_b = i % 2 == 0;
        proxy.write_config(&config(listen, extra, &servers, variant_b));
        proxy.signal(libc::SIGHUP);
        assert!(
            proxy.wait_log_count(
                "reload applied",
                WARM_RELOADS + i + 1,
                Duration::from_secs(20)
            ),
            "reload {} was not applied\n{}",
            i + 1,
            proxy.logs_tail()
        );
        if i == 0 {
            // The added service serves at once.
            let mut s = connect(extra);
            assert_eq!(
                echo_round_trip(&mut s, b"extra\n").expect("extra echo"),
                b"extra\n"
            );
        }
    }
    let took = started.elapsed();
    // Let the churn run a moment on the final configuration too.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    join(churner, "churn");
    let results: Vec<Transfer> = transfers.into_iter().map(|t| join(t, "transfer")).collect();

    let ok = churned.ok.load(Ordering::Relaxed);
    let refused = churned.refused.load(Ordering::Relaxed);
    let broken = churned.broken.load(Ordering::Relaxed);
    let moved: u64 = results.iter().map(|t| t.bytes).sum();
    eprintln!(
        "{RELOADS} reloads in {took:?}: {ok} connections opened and answered, {refused} refused, \
         {broken} broken; {} long transfers moved {moved} bytes each way, {} cut",
        results.len(),
        results.iter().filter(|t| !t.intact).count()
    );
    assert_eq!(refused, 0, "connections refused during reloads");
    assert_eq!(broken, 0, "connections broken during reloads");
    assert!(ok > RELOADS as u64, "the churn made only {ok} connections");
    for t in &results {
        assert!(t.intact, "long transfer cut or corrupted: {:?}", t.error);
        assert!(t.bytes > 0);
    }
    // The last reload applied config A: the extra service is gone.
    assert!(
        wait_refused(extra, Duration::from_secs(5)),
        "removed service still accepts"
    );

    // Resources come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.fd_count() > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (fds_after, rss_after) = (proxy.fd_count(), proxy.rss_kib());
    eprintln!("fds {fds_before} -> {fds_after}, RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(fds_after <= fds_before, "fds {fds_before} -> {fds_after}");
    assert!(
        rss_after <= rss_before + rss_before / 10 + 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
}

#[test]
fn a_bad_file_keeps_the_old_configuration_serving() {
    let backend = Backend::echo();
    let listen = listen_addr();
    let admin = listen_addr();
    let good = format!(
        "[global]\nworkers = 2\nadmin = \"{admin}\"\n\n\
         [[service]]\nname = \"test\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\n\
         [[service.server]]\naddress = \"{}\"\n",
        backend.addr()
    );
    let proxy = Proxy::start(&good);
    let bad = good.replace(
        "mode = \"passthrough\"",
        "mode = \"passthru\"\nidle_timeout = \"soon\"",
    );
    proxy.write_config(&bad);

    // Through the API: 422 with every problem, located.
    let r = http(admin, "POST", "/api/reload", None, "");
    assert_eq!(r.status, 422, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON error body");
    let problems = body["problems"].as_array().expect("problems array");
    assert_eq!(problems.len(), 2, "{body}");
    let text = r.body.as_str();
    assert!(text.contains("ringmaster.toml:8:"), "{text}");
    assert!(text.contains("passthru"), "{text}");
    assert!(text.contains("idle_timeout"), "{text}");

    // Through SIGHUP: logged, still serving.
    proxy.signal(libc::SIGHUP);
    assert!(
        proxy.wait_log_count("reload refused", 4, Duration::from_secs(10)),
        "{}",
        proxy.logs_tail()
    );
    let mut s = connect(listen);
    assert_eq!(
        echo_round_trip(&mut s, b"still here\n").expect("echo"),
        b"still here\n"
    );

    // A good file again applies.
    proxy.write_config(&good.replace("workers = 2", "workers = 2\ndrain_timeout = \"3s\""));
    let r = http(admin, "POST", "/api/reload", None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let api: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/api/services", None)).expect("JSON");
    assert_eq!(api["reload_failures"], 2, "{api}");
    assert_eq!(api["reloads"], 1, "{api}");
}
