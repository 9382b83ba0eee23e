//! hostile: the hostile-client suite at scale, against the release binary (`benches/hostile/run.sh`
//! runs it, with sslyze and an openssl TLS 1.0 probe). Each case starts a fresh ringmaster on a
//! generated config with fake servers in this process, says what it sent and what must hold,
//! and prints its figures; the process exits 1 if any case did not hold.
//!
//! ```sh
//! cargo build --release --bin ringmaster --example hostile
//! target/release/examples/hostile --binary target/release/ringmaster --out bench-out/hostile
//! ```
//!
//! Attackers connect from 127.0.x.y addresses (own ephemeral port ranges); the normal client and
//! every server use 127.0.0.1. Everything listens on loopback.

mod memory;
mod peers;
mod proxy;
mod scenarios;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "hostile",
    about = "Hostile clients and servers against ringmaster, with figures"
)]
struct Args {
    /// The ringmaster binary to attack.
    #[arg(long, default_value = "target/release/ringmaster")]
    binary: PathBuf,
    /// Connections per attack.
    #[arg(long, default_value_t = 1000)]
    scale: usize,
    /// Where to write summary.md (and the proxies' logs and configs).
    #[arg(long, default_value = "bench-out/hostile")]
    out: PathBuf,
    /// Cases to run, comma-separated: handshake, flood, no_read, servers, emfile, malformed, memory.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
}

type Case = (&'static str, fn(&scenarios::Ctx) -> scenarios::Row);

const CASES: [Case; 7] = [
    ("handshake", scenarios::handshake),
    ("flood", scenarios::flood),
    ("no_read", memory::no_read),
    ("servers", scenarios::servers),
    ("emfile", scenarios::emfile),
    ("malformed", scenarios::malformed),
    ("memory", memory::memory),
];

fn main() {
    let args = Args::parse();
    for c in &args.cases {
        if !CASES.iter().any(|(name, _)| name == c) {
            eprintln!(
                "unknown case {c:?}; cases: {}",
                CASES.map(|(n, _)| n).join(", ")
            );
            std::process::exit(2);
        }
    }
    std::fs::create_dir_all(&args.out).expect("create the output directory");
    // Absolute: the configs name files under it, and a config's relative paths start at its own
    // directory.
    let out = std::path::absolute(&args.out).expect("output directory");
    let pki = peers::Pki::new(&out.join("pki"));
    let ctx = scenarios::Ctx {
        binary: &args.binary,
        dir: &out,
        pki: &pki,
        scale: args.scale,
    };
    let mut rows = Vec::new();
    for (name, run) in CASES {
        if !args.cases.is_empty() && !args.cases.iter().any(|c| c == name) {
            continue;
        }
        let started = Instant::now();
        eprintln!("hostile: {name} ...");
        let row = run(&ctx);
        eprintln!(
            "hostile: {name}: {} in {:.1} s — {}",
            if row.held { "held" } else { "DID NOT HOLD" },
            started.elapsed().as_secs_f64(),
            row.figures
        );
        rows.push(row);
    }
    let mut md =
        String::from("| case | sent | must hold | figures | held |\n|---|---|---|---|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.case,
            r.sent,
            r.must,
            r.figures,
            if r.held { "yes" } else { "**no**" }
        ));
    }
    std::fs::write(out.join("summary.md"), &md).expect("write summary.md");
    println!("{md}");
    if rows.iter().any(|r| !r.held) {
        std::process::exit(1);
    }
}
