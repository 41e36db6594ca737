//! One database, one store: the store's identity lives in the store (a random id in
//! `docker/registry/v2/ferry-store-id`, see [`crate::storage::layout::store_id`]) and the
//! database records it, so a data directory moved to another path, restored elsewhere or
//! mounted at another place is still the same store, and another store is refused.
//!
//! | database | store | outcome |
//! |---|---|---|
//! | id | the same id | the store: serve |
//! | id | another id, or none | another store: refuse, naming both |
//! | none, nothing recorded | none | a new registry: create the id in the store, record it |
//! | none | an id | a new database on an existing store (adoption, a lost database): record it |
//! | none, the location of before ids existed | none | upgrade: same location, or same kind (filesystem, S3) and a sample of the database's blobs is in the store (moved): write an id, record it |
//!
//! The store's location (path or bucket) is still recorded, for messages only.

use crate::metadata::MetadataStore;
use crate::storage::{BlobStore, StorageError};

use super::ServeError;

/// Key in `registry_info` holding the id of the store the database indexes.
pub const STORE_ID: &str = "store_id";

/// Key in `registry_info` holding where the store was last opened (`filesystem:<path>`,
/// `s3://<bucket>/<root>`); before store ids, the identity itself.
pub const STORE_LOCATION: &str = "storage";

/// Blobs of a pre-id database that must be in a store at another location for it to be
/// taken as the same store, moved.
const MOVED_SAMPLE: u32 = 16;

/// Checks that `storage` is the store the metadata indexes, recording the identity when it
/// is new (see the module's table). `database` names the database in messages. Nothing is
/// written to either side before the check has passed.
pub async fn check(
    database: &str,
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
) -> Result<(), ServeError> {
    let location = storage.describe();
    let recorded_id = metadata.info(STORE_ID).await?;
    let recorded_location = metadata.info(STORE_LOCATION).await?;
    let marker = match storage.read_store_id().await {
        Ok(marker) => marker,
        Err(StorageError::Backend(e)) => {
            // As before ids: an unreachable object store does not stop the start (requests
            // that need it fail until it answers); it is checked (and a new store's id
            // written) at the next start.
            tracing::warn!(
                storage = %location,
                error = %e,
                "storage does not answer: the store's identity is not checked this time"
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    match (&recorded_id, &marker) {
        (Some(id), Some(found)) if id == found => {}
        (Some(id), found) => {
            return Err(ServeError::StoreMismatch {
                database: database.to_string(),
                indexed: id.clone(),
                last_seen: recorded_location.unwrap_or_else(|| "?".into()),
                configured: location,
                found: found.clone(),
            });
        }
        (None, marker) => {
            if let Some(old) = &recorded_location
                && *old != location
            {
                if !same_kind(old, &location) || !holds_sample(metadata, storage).await? {
                    return Err(ServeError::StorageMismatch {
                        database: database.to_string(),
                        indexed: old.clone(),
                        configured: location,
                    });
                }
                tracing::info!(
                    from = %old,
                    to = %location,
                    "the store moved (its blobs are here): recording its new identity"
                );
            }
            let id = match marker {
                Some(id) => {
                    tracing::info!(store = %id, storage = %location, "adopting the store's id");
                    id.clone()
                }
                None => {
                    let id = storage
                        .write_store_id(&uuid::Uuid::new_v4().to_string())
                        .await?;
                    tracing::info!(store = %id, storage = %location, "wrote the store's id");
                    id
                }
            };
            // Replicas starting at once on a new database: the first id recorded stands.
            let stored = metadata.init_info(STORE_ID, &id).await?;
            if stored != id {
                return Err(ServeError::StoreMismatch {
                    database: database.to_string(),
                    indexed: stored,
                    last_seen: location.clone(),
                    configured: location,
                    found: Some(id),
                });
            }
        }
    }
    if recorded_location.as_deref() != Some(location.as_str()) {
        metadata.set_info(STORE_LOCATION, &location).await?;
    }
    Ok(())
}

/// Whether two locations are of one kind of storage (`filesystem:` or `s3://`).
fn same_kind(a: &str, b: &str) -> bool {
    let kind = |s: &str| s.split(':').next().unwrap_or_default().to_string();
    kind(a) == kind(b)
}

/// Whether the store holds a random sample of the blobs the metadata records, with their
/// sizes (vacuously true for a database without blobs).
async fn holds_sample(
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
) -> Result<bool, ServeError> {
    for (digest, size) in metadata.sample_blobs(MOVED_SAMPLE).await? {
        if storage.stat(&digest).await? != Some(size) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::sql::SqlStore;
    use crate::oci::{Algorithm, Digest};
    use crate::storage::filesystem::FilesystemStore;
    use crate::storage::layout;

    struct Fixture {
        _dir: tempfile::TempDir,
        db: SqlStore,
        store: FilesystemStore,
        other: FilesystemStore,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::metadata::sqlite::open(&dir.path().join("db/metadata.db"))
            .await
            .unwrap();
        let store = FilesystemStore::new(dir.path().join("one"));
        let other = FilesystemStore::new(dir.path().join("two"));
        Fixture {
            _dir: dir,
            db,
            store,
            other,
        }
    }

    async fn put_blob(f: &Fixture, store: &FilesystemStore, bytes: &'static [u8]) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        store
            .put(&digest, bytes::Bytes::from_static(bytes))
            .await
            .unwrap();
        let repo = crate::oci::RepositoryName::parse("a/b").unwrap();
        f.db.link_blobs(&repo, &[(digest.clone(), bytes.len() as u64)])
            .await
            .unwrap();
        digest
    }

    #[tokio::test]
    async fn a_new_registry_gets_an_id_in_both_and_keeps_it() {
        let f = fixture().await;
        check("db", &f.db, &f.store).await.unwrap();
        let id = f.db.info(STORE_ID).await.unwrap().unwrap();
        assert_eq!(f.store.read_store_id().await.unwrap(), Some(id.clone()));
        uuid::Uuid::parse_str(&id).unwrap();
        check("db", &f.db, &f.store).await.unwrap();
        assert_eq!(f.db.info(STORE_ID).await.unwrap(), Some(id));
    }

    #[tokio::test]
    async fn another_store_is_refused_naming_both() {
        let f = fixture().await;
        check("db", &f.db, &f.store).await.unwrap();
        // No id at all.
        let e = check("db", &f.db, &f.other).await.unwrap_err();
        assert!(
            matches!(e, ServeError::StoreMismatch { found: None, .. }),
            "{e}"
        );
        assert!(
            f.other.read_store_id().await.unwrap().is_none(),
            "wrote into the other"
        );
        // Another id.
        f.other.write_store_id("other-id").await.unwrap();
        let e = check("db", &f.db, &f.other).await.unwrap_err().to_string();
        let id = f.db.info(STORE_ID).await.unwrap().unwrap();
        assert!(e.contains(&id) && e.contains("other-id"), "{e}");
        assert!(e.contains(&f.store.describe()), "{e}");
        assert!(e.contains(&f.other.describe()), "{e}");
    }

    #[tokio::test]
    async fn a_new_database_adopts_the_stores_id() {
        let f = fixture().await;
        f.store.write_store_id("existing").await.unwrap();
        check("db", &f.db, &f.store).await.unwrap();
        assert_eq!(
            f.db.info(STORE_ID).await.unwrap().as_deref(),
            Some("existing")
        );
    }

    #[tokio::test]
    async fn a_database_from_before_ids_is_upgraded_in_place_or_moved() {
        // In place.
        let f = fixture().await;
        f.db.set_info(STORE_LOCATION, &f.store.describe())
            .await
            .unwrap();
        check("db", &f.db, &f.store).await.unwrap();
        let id = f.db.info(STORE_ID).await.unwrap().unwrap();
        assert_eq!(f.store.read_store_id().await.unwrap(), Some(id));

        // Moved: the blobs are at the new place.
        let f = fixture().await;
        put_blob(&f, &f.other, b"moved blob").await;
        f.db.set_info(STORE_LOCATION, &f.store.describe())
            .await
            .unwrap();
        check("db", &f.db, &f.other).await.unwrap();
        assert_eq!(
            f.db.info(STORE_LOCATION).await.unwrap(),
            Some(f.other.describe())
        );
        assert!(f.other.read_store_id().await.unwrap().is_some());

        // Another place without the blobs, or another kind: refused, nothing written.
        let f = fixture().await;
        put_blob(&f, &f.store, b"stays here").await;
        f.db.set_info(STORE_LOCATION, &f.store.describe())
            .await
            .unwrap();
        let e = check("db", &f.db, &f.other).await.unwrap_err();
        assert!(matches!(e, ServeError::StorageMismatch { .. }), "{e}");
        assert!(!layout::store_id(f.other.root()).exists());
        assert!(f.db.info(STORE_ID).await.unwrap().is_none());
        f.db.set_info(STORE_LOCATION, "s3://bucket/root")
            .await
            .unwrap();
        let e = check("db", &f.db, &f.store).await.unwrap_err();
        assert!(matches!(e, ServeError::StorageMismatch { .. }), "{e}");
    }
}
