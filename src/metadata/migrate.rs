//! `ferry migrate-metadata --from <sqlite file> --to <postgres url>`: one node's metadata
//! moved into PostgreSQL, so that replicas can serve the same storage without a re-push.
//!
//! Every table is copied as it is (repository ids included, so no row needs rewriting),
//! in one PostgreSQL transaction: the destination holds all of it or none of it. The
//! source is read in one SQLite read transaction (a consistent state even if the node is
//! still running); rows are streamed, manifests (payloads up to 4 MiB each) read in pages
//! sized beforehand, and inserted in batches bounded in rows and bytes, so memory does not
//! grow with the database.
//! Before the commit the row count of every table is compared on both sides.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
// Dynamic SQL here is built from the constant names in `TABLES` and numbered parameters
// only: no value is ever spliced into a statement.
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use super::MetadataError;
use super::postgres::{self, PostgresSettings, redacted};
use super::sqlite;

/// Rows per `INSERT` at most.
const BATCH_ROWS: usize = 500;

/// Bytes of values per `INSERT` at most (one row may exceed it alone: a batch is flushed
/// once it reaches the bound, so at most one payload above it).
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Connections per destination pool: the copy uses one.
const DESTINATION_CONNECTIONS: u32 = 2;

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    /// `INTEGER` / `BIGINT` (possibly NULL).
    Int,
    /// `TEXT` (possibly NULL).
    Text,
    /// `BLOB` / `BYTEA` (possibly NULL).
    Bytes,
}

/// A table and its columns, in the order they are copied (referenced tables first).
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Rows large enough (manifests' payloads, up to 4 MiB) that they are read in pages
    /// sized beforehand ([`copy_paged`]) rather than streamed: SQLite's driver reads
    /// ahead of the consumer (50 rows), which would be 200 MiB of payloads.
    paged: bool,
}

/// Every table of the schema (migrations/sqlite and migrations/postgres hold the same).
const TABLES: &[Table] = &[
    Table {
        name: "registry_info",
        columns: &[("key", Kind::Text), ("value", Kind::Text)],
        paged: false,
    },
    Table {
        name: "repositories",
        columns: &[
            ("id", Kind::Int),
            ("name", Kind::Text),
            ("created_at", Kind::Int),
        ],
        paged: false,
    },
    Table {
        name: "blobs",
        columns: &[
            ("digest", Kind::Text),
            ("size", Kind::Int),
            ("created_at", Kind::Int),
            ("last_used", Kind::Int),
        ],
        paged: false,
    },
    Table {
        name: "repository_blobs",
        columns: &[
            ("repository_id", Kind::Int),
            ("digest", Kind::Text),
            ("created_at", Kind::Int),
        ],
        paged: false,
    },
    Table {
        name: "manifests",
        columns: &[
            ("repository_id", Kind::Int),
            ("digest", Kind::Text),
            ("media_type", Kind::Text),
            ("artifact_type", Kind::Text),
            ("subject", Kind::Text),
            ("annotations", Kind::Text),
            ("size", Kind::Int),
            ("payload", Kind::Bytes),
            ("created_at", Kind::Int),
            ("last_pulled", Kind::Int),
            ("cache_ttl", Kind::Int),
        ],
        paged: true,
    },
    Table {
        name: "manifest_references",
        columns: &[
            ("repository_id", Kind::Int),
            ("manifest_digest", Kind::Text),
            ("child_digest", Kind::Text),
            ("kind", Kind::Text),
        ],
        paged: false,
    },
    Table {
        name: "tags",
        columns: &[
            ("repository_id", Kind::Int),
            ("name", Kind::Text),
            ("manifest_digest", Kind::Text),
            ("updated_at", Kind::Int),
        ],
        paged: false,
    },
    Table {
        name: "uploads",
        columns: &[
            ("id", Kind::Text),
            ("repository", Kind::Text),
            ("size", Kind::Int),
            ("hash_state", Kind::Bytes),
            ("started_at", Kind::Int),
            ("updated_at", Kind::Int),
        ],
        paged: false,
    },
];

/// One column's value of one row.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    /// Bytes it occupies (for the batch bound).
    fn len(&self) -> usize {
        match self {
            Value::Int(_) => 8,
            Value::Text(t) => t.as_ref().map_or(0, String::len),
            Value::Bytes(b) => b.as_ref().map_or(0, Vec::len),
        }
    }
}

/// Why a migration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The source database cannot be used (missing, not a Ferry database).
    #[error("source {path}: {reason}")]
    Source {
        /// The SQLite file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The destination cannot be reached or prepared (URL, connection, schema).
    #[error("destination: {0}")]
    Destination(MetadataError),
    /// The destination already holds metadata: nothing was written.
    #[error(
        "destination {database} is not empty ({contents}): refusing to merge two registries' \
         metadata; migrate into a new database"
    )]
    NotEmpty {
        /// The URL without its password.
        database: String,
        /// `table: N rows` of the tables holding rows.
        contents: String,
    },
    /// The copy failed; the destination transaction was rolled back.
    #[error("copy failed (nothing was committed): {0}")]
    Copy(#[from] MetadataError),
    /// The row counts differ after the copy; rolled back.
    #[error("row counts differ after the copy (nothing was committed): {0}")]
    Mismatch(String),
}

impl MigrateError {
    /// The exit status of `ferry migrate-metadata`: 2 when the arguments or the databases
    /// named are unusable (nothing was tried), 1 when the copy itself failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::Source { .. }
            | MigrateError::Destination(_)
            | MigrateError::NotEmpty { .. } => 2,
            MigrateError::Copy(_) | MigrateError::Mismatch(_) => 1,
        }
    }
}

/// What was copied.
#[derive(Clone, Debug)]
pub struct MigrationReport {
    /// The SQLite file.
    pub from: PathBuf,
    /// The PostgreSQL URL without its password.
    pub to: String,
    /// Rows of each table, in copy order (equal on both sides).
    pub tables: Vec<(&'static str, u64)>,
}

impl MigrationReport {
    /// The report as JSON: `{"from", "to", "tables": {"<table>": rows, ...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let tables: serde_json::Map<String, serde_json::Value> = self
            .tables
            .iter()
            .map(|(name, rows)| ((*name).to_string(), (*rows).into()))
            .collect();
        serde_json::json!({
            "from": self.from.display().to_string(),
            "to": self.to,
            "tables": tables,
        })
    }
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "migrated the metadata of {} into {} (rows per table, equal on both sides):",
            self.from.display(),
            self.to
        )?;
        for (name, rows) in &self.tables {
            writeln!(f, "  {name:<20} {rows}")?;
        }
        Ok(())
    }
}

/// Copies the metadata in the SQLite file `from` (migrated to the current schema first)
/// into the PostgreSQL database `to` (its schema created when missing), which must hold no
/// metadata yet; `progress` gets a line per table.
pub async fn migrate(
    from: &Path,
    to: &PostgresSettings,
    progress: &mut dyn FnMut(&str),
) -> Result<MigrationReport, MigrateError> {
    let source_error = |reason: String| MigrateError::Source {
        path: from.to_path_buf(),
        reason,
    };
    // sqlite::open creates a missing file: a typo must not migrate an empty registry.
    match std::fs::metadata(from) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(source_error("is not a file".into())),
        Err(e) => return Err(source_error(e.to_string())),
    }
    let source = sqlite::open(from)
        .await
        .map_err(|e| source_error(e.to_string()))?;
    let destination = match postgres::open(to).await {
        Ok(destination) => destination,
        Err(e) => {
            source.close().await;
            return Err(MigrateError::Destination(e));
        }
    };
    let result = copy(
        source.pools().1,
        destination.pools().0,
        &redacted(&to.url),
        progress,
    )
    .await;
    source.close().await;
    destination.close().await;
    let tables = result?;
    Ok(MigrationReport {
        from: from.to_path_buf(),
        to: redacted(&to.url),
        tables,
    })
}

/// The copy proper: one read transaction on `source`, one write transaction on
/// `destination`, committed only when the counts agree.
async fn copy(
    source: &sqlx::AnyPool,
    destination: &sqlx::AnyPool,
    database: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(&'static str, u64)>, MigrateError> {
    let mut dst = destination.begin().await.map_err(MetadataError::from)?;
    // Replicas started early wait (reads go on) until the copy commits or rolls back.
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        names.join(", ")
    )))
    .execute(&mut *dst)
    .await
    .map_err(MetadataError::from)?;
    let mut occupied = Vec::new();
    for table in TABLES.iter().filter(|t| t.name != "registry_info") {
        let rows = count(&mut dst, table.name).await?;
        if rows > 0 {
            occupied.push(format!("{}: {rows} rows", table.name));
        }
    }
    if !occupied.is_empty() {
        return Err(MigrateError::NotEmpty {
            database: database.to_string(),
            contents: occupied.join(", "),
        });
    }
    // What a replica started on the empty database recorded (its own token secret, the
    // store id) gives way to the node's: tokens the node issued stay valid, and its store
    // id is the one the replicas check.
    sqlx::query("DELETE FROM registry_info")
        .execute(&mut *dst)
        .await
        .map_err(MetadataError::from)?;

    let mut src = source.begin().await.map_err(MetadataError::from)?;
    let mut copied = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let rows = copy_table(&mut src, &mut dst, table).await?;
        progress(&format!("{}: {rows} rows", table.name));
        copied.push((table.name, rows));
    }
    // Ids were inserted explicitly: the next repository created must not reuse one.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('repositories', 'id'), \
         COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM repositories",
    )
    .execute(&mut *dst)
    .await
    .map_err(MetadataError::from)?;

    let mut mismatches = Vec::new();
    for (name, rows) in &copied {
        let in_source = count(&mut src, name).await?;
        let in_destination = count(&mut dst, name).await?;
        if in_source != *rows || in_destination != *rows {
            mismatches.push(format!(
                "{name}: {in_source} in the source, {rows} copied, {in_destination} in the destination"
            ));
        }
    }
    if !mismatches.is_empty() {
        return Err(MigrateError::Mismatch(mismatches.join("; ")));
    }
    src.rollback().await.map_err(MetadataError::from)?;
    dst.commit().await.map_err(MetadataError::from)?;
    Ok(copied)
}

/// `SELECT COUNT(*) FROM <table>` in `tx`.
async fn count(tx: &mut Transaction<'static, Any>, table: &str) -> Result<u64, MetadataError> {
    let (n,): (i64,) = sqlx::query_as(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut **tx)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Copies `table` out of `src` into `dst` in batches; returns the rows copied.
async fn copy_table(
    src: &mut Transaction<'static, Any>,
    dst: &mut Transaction<'static, Any>,
    table: &Table,
) -> Result<u64, MetadataError> {
    if table.paged {
        copy_paged(src, dst, table).await
    } else {
        copy_streamed(src, dst, table).await
    }
}

/// Copies the manifests page by page in key order: the keys and sizes of the next
/// [`BATCH_ROWS`] rows first, then the full rows of as many of them as fit in
/// [`BATCH_BYTES`] (at least one), so no more than that is ever read ahead.
async fn copy_paged(
    src: &mut Transaction<'static, Any>,
    dst: &mut Transaction<'static, Any>,
    table: &Table,
) -> Result<u64, MetadataError> {
    const SIZES: &str = "SELECT repository_id, digest,
           length(payload) + COALESCE(length(annotations), 0) FROM manifests
         WHERE (repository_id, digest) > ($1, $2) ORDER BY repository_id, digest LIMIT $3";
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let select = format!(
        "SELECT {} FROM {} WHERE (repository_id, digest) > ($1, $2)
           AND (repository_id, digest) <= ($3, $4) ORDER BY repository_id, digest",
        columns.join(", "),
        table.name
    );
    let limit = i64::try_from(BATCH_ROWS).unwrap_or(i64::MAX);
    // Before every key.
    let mut after: (i64, String) = (i64::MIN, String::new());
    let mut copied = 0u64;
    loop {
        let sizes: Vec<(i64, String, i64)> = sqlx::query_as(SIZES)
            .bind(after.0)
            .bind(&after.1)
            .bind(limit)
            .fetch_all(&mut **src)
            .await?;
        let mut bytes = 0usize;
        let mut last = None;
        for (repository_id, digest, size) in &sizes {
            let size = usize::try_from(*size).unwrap_or(0);
            if last.is_some() && bytes + size > BATCH_BYTES {
                break;
            }
            bytes += size;
            last = Some((*repository_id, digest.as_str()));
        }
        let Some((last_id, last_digest)) = last else {
            return Ok(copied);
        };
        let rows = sqlx::query(AssertSqlSafe(select.clone()))
            .bind(after.0)
            .bind(&after.1)
            .bind(last_id)
            .bind(last_digest)
            .fetch_all(&mut **src)
            .await?;
        let batch = rows
            .iter()
            .map(|row| decode(row, table))
            .collect::<Result<Vec<_>, _>>()?;
        drop(rows);
        copied += insert(dst, table, &columns, batch).await?;
        after = (last_id, last_digest.to_string());
    }
}

/// Streams `table` out of `src` into `dst` in batches; returns the rows copied.
async fn copy_streamed(
    src: &mut Transaction<'static, Any>,
    dst: &mut Transaction<'static, Any>,
    table: &Table,
) -> Result<u64, MetadataError> {
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let select = format!("SELECT {} FROM {}", columns.join(", "), table.name);
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **src);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH_ROWS);
    let mut batch_bytes = 0;
    let mut copied = 0u64;
    while let Some(row) = rows.try_next().await? {
        let values = decode(&row, table)?;
        batch_bytes += values.iter().map(Value::len).sum::<usize>();
        batch.push(values);
        if batch.len() >= BATCH_ROWS || batch_bytes >= BATCH_BYTES {
            copied += insert(dst, table, &columns, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        copied += insert(dst, table, &columns, batch).await?;
    }
    Ok(copied)
}

/// The values of `row`, by the column kinds of `table`.
fn decode(row: &AnyRow, table: &Table) -> Result<Vec<Value>, MetadataError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            let value = match kind {
                Kind::Int => row.try_get(i).map(Value::Int),
                Kind::Text => row.try_get(i).map(Value::Text),
                Kind::Bytes => row.try_get(i).map(Value::Bytes),
            };
            value.map_err(|e| MetadataError::Corrupt(format!("{}.{name}: {e}", table.name)))
        })
        .collect()
}

/// One multi-row `INSERT` of `batch` into `table`; returns the rows inserted.
async fn insert(
    dst: &mut Transaction<'static, Any>,
    table: &Table,
    columns: &[&str],
    batch: Vec<Vec<Value>>,
) -> Result<u64, MetadataError> {
    let width = columns.len();
    let tuples: Vec<String> = (0..batch.len())
        .map(|r| {
            let params: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        table.name,
        columns.join(", "),
        tuples.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for value in batch.into_iter().flatten() {
        query = match value {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
        };
    }
    Ok(query.execute(&mut **dst).await?.rows_affected())
}

/// The flags of `ferry migrate-metadata`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The single node's SQLite database (`database.path`; by default
    /// `<rootdirectory>/ferry/metadata.db`). Migrated to the current schema first.
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// The PostgreSQL database (`postgres://user:password@host:5432/database`), which must
    /// hold no metadata yet (its schema is created). Default: REGISTRY_DATABASE_URL.
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// No progress lines; only the summary.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// `message` with every form of the password in `url` masked (errors from database
/// drivers may quote what they were given).
fn scrub(message: &str, url: &str) -> String {
    let Some(password) = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .filter(|p| !p.is_empty())
    else {
        return message.to_string();
    };
    let mut out = message.replace(&password, "****");
    // `url` keeps the password percent-encoded; a driver may quote it decoded.
    if let Ok(decoded) = percent_encoding::percent_decode_str(&password).decode_utf8()
        && !decoded.is_empty()
    {
        out = out.replace(decoded.as_ref(), "****");
    }
    out
}

/// Runs `ferry migrate-metadata`; `Err` carries the exit status (2: bad arguments, a
/// database that cannot be used, a destination that is not empty; 1: the copy failed).
pub fn run(args: MigrateArgs) -> Result<(), ExitCode> {
    let program = "ferry migrate-metadata";
    let fail = |code: u8, message: &str| {
        eprintln!("{program}: {message}");
        ExitCode::from(code)
    };
    let url = match args
        .to
        .or_else(|| std::env::var("REGISTRY_DATABASE_URL").ok())
        .filter(|u| !u.is_empty())
    {
        Some(url) => url,
        None => {
            return Err(fail(
                2,
                "no destination: give --to postgres://... or set REGISTRY_DATABASE_URL",
            ));
        }
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(fail(
            2,
            &format!(
                "--to {}: must be a PostgreSQL URL (postgres://user:password@host:5432/database)",
                redacted(&url)
            ),
        ));
    }
    let settings = PostgresSettings {
        url: url.clone(),
        max_connections: DESTINATION_CONNECTIONS,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(1, &format!("cannot start the async runtime: {e}")))?;
    let quiet = args.quiet;
    let mut progress = |line: &str| {
        if !quiet {
            eprintln!("[{program}] {line}");
        }
    };
    match runtime.block_on(migrate(&args.from, &settings, &mut progress)) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
                );
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Err(e) => Err(fail(e.exit_code(), &scrub(&e.to_string(), &url))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_plain_and_encoded_passwords() {
        let url = "postgres://ferry:s%40cret@db:5432/ferry";
        assert_eq!(scrub("x s%40cret y s@cret", url), "x **** y ****");
        let plus = "postgres://ferry:a+b@db/ferry";
        assert_eq!(scrub("a+b", plus), "****");
        assert_eq!(scrub("nothing", "postgres://db/ferry"), "nothing");
    }

    #[test]
    fn report_names_every_table_with_its_rows() {
        let report = MigrationReport {
            from: PathBuf::from("/data/ferry/metadata.db"),
            to: "postgres://ferry:****@db/ferry".into(),
            tables: vec![("repositories", 2), ("manifests", 7)],
        };
        let text = report.to_string();
        assert!(text.contains("/data/ferry/metadata.db into postgres://ferry:****@db/ferry"));
        assert!(text.contains("  repositories         2\n  manifests            7\n"));
        let json = report.to_json();
        assert_eq!(json["tables"]["manifests"], 7);
        assert_eq!(json["to"], "postgres://ferry:****@db/ferry");
    }

    #[test]
    fn every_table_of_the_schema_is_copied() {
        let schema = include_str!("../../migrations/postgres/0001_initial.sql");
        let created = schema.matches("CREATE TABLE ").count();
        assert_eq!(created, TABLES.len());
        for table in TABLES {
            assert!(
                schema.contains(&format!("CREATE TABLE {} (", table.name)),
                "{}",
                table.name
            );
        }
    }
}
