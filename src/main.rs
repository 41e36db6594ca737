//! `ferry`: the registry's command line. The one executable also answers as `ferry-gc`
//! (the collector) and as `registry` (Distribution's command line, so `registry:2` scripts
//! such as `bin/registry garbage-collect CONFIG` run unchanged in Ferry's image).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ferry::config::Config;
use ferry::gc::cli::GcArgs;

/// Ferry, a container image registry: a drop-in replacement for registry:2.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (the default when no command is given).
    Serve {
        /// Distribution-style config.yml. Given several, the first that exists is used;
        /// given none, embedded defaults apply. REGISTRY_* variables override either.
        config: Vec<PathBuf>,
    },
    /// Give back the disk space of deleted images (also `garbage-collect`, as registry:2
    /// names it; the same as `ferry-gc`).
    #[command(visible_alias = "garbage-collect")]
    Gc(GcArgs),
    /// Index a registry:2 (Distribution) data directory in Ferry's database, in place
    /// (re-runnable; the server also does this at startup when it finds one).
    Import {
        /// The server's config.yml (first existing of several).
        config: Vec<PathBuf>,
        /// Re-hash every blob and report mismatches.
        #[arg(long)]
        verify: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the registry into DEST while it serves: a consistent snapshot of the metadata,
    /// then every blob it records (incremental), so that `ferry serve` on DEST serves the
    /// images of the snapshot.
    #[command(override_usage = "ferry backup [OPTIONS] [CONFIG]... DEST")]
    Backup(ferry::backup::cli::BackupArgs),
    /// Copy a single node's SQLite metadata into an empty PostgreSQL database (one
    /// transaction, row counts checked), so replicas can serve the same storage from it.
    MigrateMetadata(ferry::metadata::migrate::MigrateArgs),
    /// Exit 0 when the registry configured by CONFIG answers `GET /health/ready` with 200
    /// on its address (for container health checks).
    Healthcheck {
        /// The same configuration the server uses (first existing of several).
        config: Vec<PathBuf>,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

fn load_config(candidates: &[PathBuf]) -> Result<Config, ExitCode> {
    Config::load_first(candidates, std::env::vars()).map_err(|e| {
        eprintln!("ferry: {e}");
        ExitCode::from(2)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("ferry: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn run(command: Command) -> Result<(), ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = load_config(&config)?;
            ferry::telemetry::init(&config.log);
            runtime()?
                .block_on(ferry::server::serve(config))
                .map_err(|e| {
                    tracing::error!("{e}");
                    eprintln!("ferry: {e}");
                    match e {
                        // Certificate, htpasswd or token key files that do not load: a
                        // configuration problem.
                        ferry::server::ServeError::Tls(_) | ferry::server::ServeError::Auth(_) => {
                            ExitCode::from(2)
                        }
                        _ => ExitCode::FAILURE,
                    }
                })
        }
        Command::Gc(args) => ferry::gc::cli::run(args, "ferry gc"),
        Command::Backup(args) => ferry::backup::cli::run(args),
        Command::MigrateMetadata(args) => ferry::metadata::migrate::run(args),
        Command::Import {
            config,
            verify,
            json,
        } => {
            let config = load_config(&config)?;
            ferry::telemetry::init(&config.log);
            let report = runtime()?.block_on(async {
                let (registry, sqlite) = ferry::server::open_registry(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut progress = |line: &str| eprintln!("[ferry import] {line}");
                let report = ferry::import::import(
                    registry.metadata().as_ref(),
                    registry.storage().as_ref(),
                    verify,
                    &mut progress,
                )
                .await
                .map_err(|e| e.to_string());
                sqlite.close().await;
                report
            });
            match report {
                Ok(report) if json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                Ok(report) => {
                    println!(
                        "imported {} repositories: {} manifests, {} tags, {} blob links; {} skipped, {} corrupt blobs",
                        report.repositories,
                        report.manifests,
                        report.tags,
                        report.blobs,
                        report.skipped.len(),
                        report.corrupt_blobs.len()
                    );
                    for line in &report.skipped {
                        println!("  skipped: {line}");
                    }
                    for digest in &report.corrupt_blobs {
                        println!("  corrupt: {digest}");
                    }
                }
                Err(e) => {
                    eprintln!("ferry import: {e}");
                    return Err(ExitCode::FAILURE);
                }
            }
            Ok(())
        }
        Command::Healthcheck { config, timeout } => {
            let config = load_config(&config)?;
            let addr = ferry::healthcheck::probe_address(&config.http.addr);
            runtime()?
                .block_on(ferry::healthcheck::check(
                    &addr,
                    config.http.tls.is_some(),
                    Duration::from_secs(timeout),
                ))
                .map_err(|e| {
                    eprintln!("ferry: unhealthy: {e}");
                    ExitCode::FAILURE
                })
        }
    }
}

/// The version line of `registry --version`: says which registry this really is.
const REGISTRY_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (Ferry, a drop-in replacement for registry:2)"
);

/// The command line as clap should see it. Like `registry:2`'s image, a first argument
/// that is a YAML file means `serve` it (`docker run ferry /etc/docker/registry/config.yml`).
fn normalise(args: Vec<OsString>) -> Vec<OsString> {
    let is_yaml = |a: &OsString| {
        Path::new(a)
            .extension()
            .is_some_and(|e| e == "yml" || e == "yaml")
    };
    match args.get(1) {
        Some(first) if is_yaml(first) => {
            let mut out = vec![args[0].clone(), OsString::from("serve")];
            out.extend(args[1..].iter().cloned());
            out
        }
        _ => args,
    }
}

fn main() -> ExitCode {
    let args = normalise(std::env::args_os().collect());
    let program = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("ferry")
        .to_string();
    // One executable, three names: `ferry-gc` (a link) is the collector; `registry` is
    // Distribution's command line (`serve`, `garbage-collect`), answered by Ferry's.
    let matches = match program.as_str() {
        "ferry-gc" => return ferry::gc::cli::main(args),
        "registry" => Cli::command()
            .name("registry")
            .bin_name("registry")
            .version(REGISTRY_VERSION)
            .get_matches_from(args),
        _ => Cli::command().get_matches_from(args),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli.command.unwrap_or(Command::Serve { config: Vec::new() })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
