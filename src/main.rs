//! `ferry`: the registry's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferry::config::Config;

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
    /// Exit 0 when the registry configured by CONFIG answers on its address (for
    /// container health checks).
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
                    ExitCode::FAILURE
                })
        }
        Command::Healthcheck { config, timeout } => {
            let config = load_config(&config)?;
            let addr = ferry::healthcheck::probe_address(&config.http.addr);
            runtime()?
                .block_on(ferry::healthcheck::check(
                    &addr,
                    Duration::from_secs(timeout),
                ))
                .map_err(|e| {
                    eprintln!("ferry: unhealthy: {e}");
                    ExitCode::FAILURE
                })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command.unwrap_or(Command::Serve { config: Vec::new() })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
