//! The notification queue (`notification_events`) in SQL, the same text on both databases.
//! Claims are one conditional `UPDATE ... RETURNING`: a row is taken only while nobody else
//! holds it (no lease, an ended lease, or the claimant's own), so two replicas sharing a
//! PostgreSQL database never hold the same row (under `SERIALIZABLE` the loser of a race is
//! refused and [`retrying`] runs the claim again, seeing the winner's lease).

use super::{SqlStore, retrying};
use crate::metadata::{Lease, MetadataError, NewEvent, QueuedEvent, now};

/// Takes the oldest free rows of an endpoint, skipping any whose repository has an older
/// row another owner holds (so one repository's events are never delivered out of order).
const CLAIM: &str = "UPDATE notification_events SET lease_owner = $2, lease_until = $4
    WHERE id IN (
        SELECT e.id FROM notification_events e
        WHERE e.endpoint = $1
          AND (e.lease_owner IS NULL OR e.lease_owner = $2 OR e.lease_until < $3)
          AND NOT EXISTS (
              SELECT 1 FROM notification_events p
              WHERE p.endpoint = e.endpoint AND p.repository = e.repository AND p.id < e.id
                AND p.lease_owner IS NOT NULL AND p.lease_owner <> $2 AND p.lease_until >= $3)
        ORDER BY e.id LIMIT $5)
      AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $3)
    RETURNING id, repository, payload";

impl SqlStore {
    pub(super) async fn enqueue_events_sql(
        &self,
        events: &[NewEvent<'_>],
    ) -> Result<(), MetadataError> {
        if events.is_empty() {
            return Ok(());
        }
        retrying(|| async {
            let mut tx = self.begin().await?;
            let created = now();
            for event in events {
                sqlx::query(
                    "INSERT INTO notification_events (endpoint, repository, payload, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(event.endpoint)
                .bind(event.repository)
                .bind(event.payload)
                .bind(created)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn claim_events_sql(
        &self,
        lease: Lease<'_>,
        limit: u32,
    ) -> Result<Vec<QueuedEvent>, MetadataError> {
        let mut rows: Vec<(i64, String, String)> = retrying(|| async {
            Ok(sqlx::query_as(CLAIM)
                .bind(lease.endpoint)
                .bind(lease.owner)
                .bind(lease.now_ms)
                .bind(lease.until_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.writer)
                .await?)
        })
        .await?;
        // RETURNING promises no order.
        rows.sort_by_key(|(id, _, _)| *id);
        Ok(rows
            .into_iter()
            .map(|(id, repository, payload)| QueuedEvent {
                id,
                repository,
                payload,
            })
            .collect())
    }

    pub(super) async fn ack_events_sql(
        &self,
        endpoint: &str,
        owner: &str,
        ids: &[i64],
    ) -> Result<u64, MetadataError> {
        if ids.is_empty() {
            return Ok(0);
        }
        retrying(|| async {
            let mut tx = self.begin().await?;
            let mut deleted = 0;
            for id in ids {
                deleted += sqlx::query(
                    "DELETE FROM notification_events
                     WHERE id = $1 AND endpoint = $2 AND lease_owner = $3",
                )
                .bind(*id)
                .bind(endpoint)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }

    pub(super) async fn release_events_sql(&self, owner: &str) -> Result<u64, MetadataError> {
        self.write_one(
            "UPDATE notification_events SET lease_owner = NULL, lease_until = NULL
             WHERE lease_owner = $1",
            |q| q.bind(owner),
        )
        .await
    }

    pub(super) async fn trim_events_sql(
        &self,
        endpoint: &str,
        keep: u64,
    ) -> Result<u64, MetadataError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.write_one(
            "DELETE FROM notification_events WHERE endpoint = $1 AND id <= (
                 SELECT id FROM notification_events WHERE endpoint = $1
                 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            |q| q.bind(endpoint).bind(keep),
        )
        .await
    }

    pub(super) async fn drop_events_except_sql(
        &self,
        endpoints: &[&str],
    ) -> Result<u64, MetadataError> {
        let present: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT endpoint FROM notification_events")
                .fetch_all(&mut *self.reader.get().await?)
                .await?;
        let mut dropped = 0;
        for (endpoint,) in present {
            if endpoints.contains(&endpoint.as_str()) {
                continue;
            }
            dropped += self
                .write_one("DELETE FROM notification_events WHERE endpoint = $1", |q| {
                    q.bind(endpoint.as_str())
                })
                .await?;
        }
        Ok(dropped)
    }

    pub(super) async fn queued_events_sql(&self, endpoint: &str) -> Result<u64, MetadataError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM notification_events WHERE endpoint = $1")
                .bind(endpoint)
                .fetch_one(&mut *self.reader.get().await?)
                .await?;
        Ok(super::size_from_db(count))
    }
}
