//! The `ringmaster` command line: parse arguments, set up logging, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringmaster::config::{self, EXIT_CONFIG};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status when the service cannot run for a reason other than its configuration
/// (EX_UNAVAILABLE: address in use, io_uring refused, ...).
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(
    name = "ringmaster",
    version,
    about = "A thread-per-core load balancer for TLS services on io_uring",
    long_about = "ringmaster listens on the address of each virtual service in the config file and spreads \
                  connections over that service's real servers, one pinned worker thread per CPU.\n\n\
                  Start with `ringmaster check -c ringmaster.toml` to validate a config, then \
                  `ringmaster run -c ringmaster.toml`. SIGTERM or SIGINT stop accepting and drain \
                  established connections (up to [global] drain_timeout); a second signal stops at once.",
    after_help = "Exit status: 0 ok, 78 configuration error, 69 cannot serve (address in use, io_uring unavailable)."
)]
struct Cli {
    /// Log level when RUST_LOG is not set: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the virtual services of the config file until SIGTERM/SIGINT.
    Run {
        /// Configuration file (TOML).
        #[arg(short, long, default_value = "ringmaster.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate the config file and print its services and servers; exit 0, or 78 on errors.
    Check {
        /// Configuration file (TOML).
        #[arg(short, long, default_value = "ringmaster.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Extended Protection report: each server's certificate hash against its service's; exit 0
    /// when all match, 1 otherwise, 78 on configuration errors.
    EpCheck {
        /// Configuration file (TOML).
        #[arg(short, long, default_value = "ringmaster.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Self-contained demo: a self-signed certificate, two demo HTTPS servers and a re-encrypt
    /// service with Extended Protection on 127.0.0.1:8443. Ctrl-C to stop.
    Demo {
        /// The port of the demo service on 127.0.0.1.
        #[arg(long, default_value_t = ringmaster::demo::DEMO_PORT)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(cfg) => {
                print!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(EXIT_CONFIG as u8)
            }
        },
        Command::EpCheck { config } => match config::load(&config) {
            Ok(cfg) => {
                let report = ringmaster::ep_check::run(&cfg);
                print!("{}", report.render());
                if report.all_good() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(EXIT_CONFIG as u8)
            }
        },
        Command::Demo { port } => match ringmaster::demo::run(port, &cli.log_level) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringmaster demo: {e}");
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        },
        Command::Run { config } => {
            let cfg = match config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            match ringmaster::runtime::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::from(EXIT_UNAVAILABLE)
                }
            }
        }
    }
}

/// Logs to stderr; `RUST_LOG` (full `EnvFilter` syntax) wins over `--log-level`, which sets
/// ringmaster's own level. Libraries log at `warn`, rustls at `error`: it warns on every handshake
/// of a client that sends an IP address as SNI (h2load, some monitoring probes), which ringmaster
/// already handles by ignoring that SNI.
fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("warn,rustls=error,ringmaster={level}")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
