//! `ferry backup [CONFIG]... DEST`: the command line of [`super::backup`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, StorageSettings};
use crate::metadata::DatabaseSettings;

use super::{Options, Source};

/// The flags of `ferry backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Hard-link blobs instead of copying them when DEST is on the data directory's
    /// filesystem (blob files never change, so a link is as good as a copy there; it does
    /// not survive the loss of that filesystem).
    #[arg(long)]
    link: bool,
    /// Remove blobs from DEST that the new snapshot does not record (left by earlier
    /// backups of images deleted since).
    #[arg(long)]
    prune: bool,
    /// Re-hash every blob copied or linked (on S3: check every object is there with its
    /// size).
    #[arg(long)]
    verify: bool,
    /// No progress lines; only the summary.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// The server's config.yml (the first that exists of several; none: the embedded
    /// defaults, as `ferry serve`), then the backup directory (created when missing; a
    /// Ferry data directory afterwards).
    #[arg(required = true, num_args = 1.., value_name = "CONFIG... DEST")]
    paths: Vec<PathBuf>,
}

/// Runs `ferry backup`; `Err` carries the exit status (2: the configuration or destination
/// is unusable; 1: the backup failed or is incomplete).
pub fn run(args: BackupArgs) -> Result<(), ExitCode> {
    let program = "ferry backup";
    let fail = |code: u8, message: String| {
        eprintln!("{program}: {message}");
        ExitCode::from(code)
    };
    let mut paths = args.paths;
    let Some(dest) = paths.pop() else {
        return Err(fail(2, "no destination directory given".into()));
    };
    let config =
        Config::load_first(&paths, std::env::vars()).map_err(|e| fail(2, e.to_string()))?;
    crate::telemetry::init(&config.log);
    if matches!(config.database, DatabaseSettings::Sqlite { .. }) && !config.database_path.exists()
    {
        return Err(fail(
            2,
            format!(
                "no Ferry database at {} (is this the server's configuration?)",
                config.database_path.display()
            ),
        ));
    }
    std::fs::create_dir_all(&dest)
        .map_err(|e| fail(2, format!("cannot create {}: {e}", dest.display())))?;
    let dest =
        std::fs::canonicalize(&dest).map_err(|e| fail(2, format!("{}: {e}", dest.display())))?;
    if let Err(reason) = check_destination(&config, &dest) {
        return Err(fail(2, format!("destination {}: {reason}", dest.display())));
    }
    let options = Options {
        link: args.link,
        prune: args.prune,
        verify: args.verify,
    };
    let quiet = args.quiet;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(1, format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        let (registry, metadata) = crate::server::open_registry(&config).await.map_err(|e| {
            let code = match e {
                crate::server::ServeError::StorageMismatch { .. }
                | crate::server::ServeError::StoreMismatch { .. } => 2,
                _ => 1,
            };
            (code, e.to_string())
        })?;
        let root = std::fs::canonicalize(&config.root).unwrap_or_else(|_| config.root.clone());
        let source = match config.storage {
            StorageSettings::Filesystem => Source::Files(&root),
            StorageSettings::S3(_) => Source::Objects,
        };
        let mut progress = |line: &str| {
            if !quiet {
                eprintln!("[{program}] {line}");
            }
        };
        let report = super::backup(
            metadata.as_ref(),
            registry.storage().as_ref(),
            source,
            &dest,
            &options,
            &mut progress,
        )
        .await
        .map_err(|e| (1, e.to_string()));
        metadata.close().await;
        report
    });
    match result {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{report}");
            }
            if report.complete() {
                Ok(())
            } else {
                Err(fail(
                    1,
                    "incomplete: the destination keeps its previous snapshot (see above)".into(),
                ))
            }
        }
        Err((code, message)) => Err(fail(code, message)),
    }
}

/// Refuses a destination that is the registry's own data.
fn check_destination(config: &Config, dest: &Path) -> Result<(), String> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if config.storage == StorageSettings::Filesystem && canonical(&config.root) == dest {
        return Err("is the registry's data directory; back up into another directory".into());
    }
    if canonical(&config.database_path) == canonical(&super::database_in(dest)) {
        return Err("would overwrite the registry's own database".into());
    }
    Ok(())
}
