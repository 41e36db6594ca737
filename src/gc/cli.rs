//! The `ferry-gc` command line: gives back the disk space of deleted images. Safe to run
//! while `ferry serve` runs on the same data; an interrupted run leaves the registry
//! consistent and can be run again. The `ferry-gc` binary runs it, and so does `ferry` when
//! invoked under that name (one executable in the container image).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, parse_duration};
use crate::gc::{self, Options};
use crate::metadata::DatabaseSettings;
use crate::server::ServeError;
use clap::Parser;

/// One line on what the collector does, for every command line that runs it.
pub const ABOUT: &str = "Give back the disk space of deleted images and abandoned uploads \
(safe while the server runs; same config file and REGISTRY_* overrides as the server)";

/// The collector's flags: the same for `ferry-gc`, `ferry gc` and `registry garbage-collect`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Only report what would be removed.
    #[arg(short = 'd', long)]
    dry_run: bool,
    /// Also remove manifests no tag reaches (children of kept indexes and referrers of
    /// kept manifests stay).
    #[arg(short = 'm', long)]
    delete_untagged: bool,
    /// No progress lines; only the summary.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Nothing uploaded, linked or used more recently than this is collected (0s: no
    /// grace; safe only when no push is in flight).
    #[arg(long, default_value = "1h", value_parser = grace)]
    grace: Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the outcome as Prometheus metrics to FILE (for node_exporter's textfile
    /// collector: name it `*.prom` in its directory); replaced whole on each run.
    #[arg(long, value_name = "FILE")]
    metrics_textfile: Option<PathBuf>,
    /// The server's config.yml (the first that exists of several; none: the embedded
    /// defaults, as `ferry serve` without a config).
    config: Vec<PathBuf>,
}

/// `ferry-gc`: the collector under a name of its own.
#[derive(Parser)]
#[command(name = "ferry-gc", version, about = ABOUT)]
struct Cli {
    #[command(flatten)]
    args: GcArgs,
}

fn grace(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 30m or 1h"))
}

/// Runs `ferry-gc` with the command line `args` (program name first).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    match run(Cli::parse_from(args).args, "ferry-gc") {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Why a collection did not run or did not finish: a configuration that names no usable
/// registry (exit status 2), or anything else (1).
enum Failure {
    Configuration(String),
    Other(String),
}

impl From<ServeError> for Failure {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::StorageMismatch { .. } | ServeError::StoreMismatch { .. } => {
                Failure::Configuration(e.to_string())
            }
            other => Failure::Other(other.to_string()),
        }
    }
}

/// Runs one collection as `program` (the name its messages start with); `Err` carries the
/// exit status: 2 for a configuration that names no usable registry, 1 for other failures.
pub fn run(cli: GcArgs, program: &str) -> Result<(), ExitCode> {
    let config = match Config::load_first(&cli.config, std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{program}: {e}");
            return Err(ExitCode::from(2));
        }
    };
    if matches!(config.database, DatabaseSettings::Sqlite { .. }) && !config.database_path.exists()
    {
        eprintln!(
            "{program}: no Ferry database at {} (is this the server's configuration?)",
            config.database_path.display()
        );
        return Err(ExitCode::from(2));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let options = Options {
        dry_run: cli.dry_run,
        delete_untagged: cli.delete_untagged,
        grace: cli.grace,
        upload_age: config.upload_purging.age,
    };
    let quiet = cli.quiet;
    let terminal = std::io::stderr().is_terminal();
    let result = runtime.block_on(async {
        let (registry, sqlite) = crate::server::open_registry(&config).await?;
        let mut progress = |line: &str| {
            if !quiet {
                if terminal {
                    eprintln!("\u{1b}[2m[{program}]\u{1b}[0m {line}");
                } else {
                    eprintln!("[{program}] {line}");
                }
            }
        };
        let report = gc::collect(sqlite.as_ref(), &registry, &options, &mut progress)
            .await
            .map_err(|e| Failure::Other(e.to_string()));
        sqlite.close().await;
        report
    });
    // The outcome, failures too, for node_exporter (`--metrics-textfile`).
    let mut textfile_written = true;
    if let Some(path) = &cli.metrics_textfile
        && let Err(e) =
            gc::textfile::write(path, result.as_ref().ok(), std::time::SystemTime::now())
    {
        eprintln!(
            "{program}: cannot write the metrics file {}: {e}",
            path.display()
        );
        textfile_written = false;
    }
    match result {
        Ok(report) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{report}");
            }
            if textfile_written {
                Ok(())
            } else {
                Err(ExitCode::FAILURE)
            }
        }
        Err(Failure::Configuration(e)) => {
            eprintln!("{program}: {e}");
            Err(ExitCode::from(2))
        }
        Err(Failure::Other(e)) => {
            eprintln!("{program}: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}
