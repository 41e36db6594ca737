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
use clap::Parser;

/// Garbage collector for a Ferry registry (same config file and REGISTRY_* overrides as
/// `ferry serve`).
#[derive(Parser)]
#[command(name = "ferry-gc", version, about)]
struct Cli {
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
    /// Nothing uploaded, linked or used more recently than this is collected.
    #[arg(long, default_value = "1h", value_parser = grace)]
    grace: Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// The server's config.yml (the first that exists of several; none: defaults).
    config: Vec<PathBuf>,
}

fn grace(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 30m or 1h"))
}

/// Runs `ferry-gc` with the command line `args` (program name first).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = Cli::parse_from(args);
    let config = match Config::load_first(&cli.config, std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry-gc: {e}");
            return ExitCode::from(2);
        }
    };
    if !config.database_path.exists() {
        eprintln!(
            "ferry-gc: no Ferry database at {} (is this the server's configuration?)",
            config.database_path.display()
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry-gc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
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
        let (registry, sqlite) = crate::server::open_registry(&config)
            .await
            .map_err(|e| e.to_string())?;
        let mut progress = |line: &str| {
            if !quiet {
                if terminal {
                    eprintln!("\u{1b}[2m[ferry-gc]\u{1b}[0m {line}");
                } else {
                    eprintln!("[ferry-gc] {line}");
                }
            }
        };
        let report = gc::collect(&sqlite, &registry, &options, &mut progress)
            .await
            .map_err(|e| e.to_string());
        sqlite.close().await;
        report
    });
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry-gc: {e}");
            ExitCode::FAILURE
        }
    }
}
