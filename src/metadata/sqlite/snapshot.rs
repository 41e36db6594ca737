//! A consistent copy of a live SQLite database, for `ferry backup`: `VACUUM INTO` on a
//! connection of its own (a read transaction: the server's writer is never held), then the
//! copy is opened, cleared of upload sessions, read back and fsynced.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::metadata::sql::{parse_digest, size_from_db};
use crate::metadata::{MetadataError, SnapshotContents};

/// Writes a snapshot of the database `source` to `dest` (removed first if it exists).
pub(crate) async fn write(source: &Path, dest: &Path) -> Result<SnapshotContents, MetadataError> {
    match tokio::fs::remove_file(dest).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(dest, e)),
    }
    let dest_text = dest
        .to_str()
        .ok_or_else(|| MetadataError::Database(format!("{} is not UTF-8", dest.display())))?;
    // A connection of its own, not the server's pools: VACUUM INTO is one read transaction
    // (WAL readers never block the writer), and reads may not be read-only connections
    // here (SQLite attaches the output through the same connection).
    let mut live = SqliteConnectOptions::new()
        .filename(source)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let vacuumed = sqlx::query("VACUUM INTO ?")
        .bind(dest_text)
        .execute(&mut live)
        .await;
    live.close().await?;
    vacuumed?;

    // The copy: a plain rollback-journal file (the server makes it WAL again when it
    // opens it), without upload sessions, whose staged bytes are not in a backup.
    let mut copy = SqliteConnectOptions::new()
        .filename(dest)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    let contents = read_back(&mut copy).await;
    copy.close().await?;
    let contents = contents?;
    let file = tokio::fs::File::open(dest)
        .await
        .map_err(|e| io_error(dest, e))?;
    file.sync_all().await.map_err(|e| io_error(dest, e))?;
    Ok(contents)
}

async fn read_back(copy: &mut SqliteConnection) -> Result<SnapshotContents, MetadataError> {
    sqlx::query("DELETE FROM uploads")
        .execute(&mut *copy)
        .await?;
    // Queued notifications are the live registry's to deliver: a restored copy must not
    // send them again.
    sqlx::query("DELETE FROM notification_events")
        .execute(&mut *copy)
        .await?;
    let (repositories, manifests, tags): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM repositories), (SELECT count(*) FROM manifests),
                (SELECT count(*) FROM tags)",
    )
    .fetch_one(&mut *copy)
    .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT digest, size FROM blobs ORDER BY digest")
        .fetch_all(&mut *copy)
        .await?;
    let blobs = rows
        .into_iter()
        .map(|(digest, size)| Ok((parse_digest(&digest)?, size_from_db(size))))
        .collect::<Result<Vec<_>, MetadataError>>()?;
    Ok(SnapshotContents {
        blobs,
        repositories: size_from_db(repositories),
        manifests: size_from_db(manifests),
        tags: size_from_db(tags),
    })
}

fn io_error(path: &Path, e: std::io::Error) -> MetadataError {
    MetadataError::Database(format!("{}: {e}", path.display()))
}
