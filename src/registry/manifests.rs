//! Manifests: validation on push, storage of the exact bytes, tags, deletes.

use async_trait::async_trait;
use bytes::Bytes;

use super::api::Manifests;
use super::context::RequestContext;
use super::{Registry, RegistryError};
use crate::metadata::{LockKey, NewManifest, Origin, StoredManifest};
use crate::notify::{EventAction, Target};
use crate::oci::manifest::{self, MAX_MANIFEST_SIZE};
use crate::oci::{Algorithm, Digest, Reference, RepositoryName, Tag};

/// What a successful manifest push tells the client.
#[derive(Debug)]
pub struct PushedManifest {
    /// Digest of the stored bytes.
    pub digest: Digest,
    /// The subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

#[async_trait]
impl Manifests for Registry {
    async fn put_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest, RegistryError> {
        let pushed = self
            .store_manifest(
                repository,
                reference,
                extra_tags,
                content_type,
                body.clone(),
                Origin::Pushed,
            )
            .await?;
        if self.notifier.is_some() {
            // One event per tag it was pushed under (by digest: one without a tag).
            let media_type = manifest::parse(&body, content_type)
                .map(|p| p.media_type)
                .unwrap_or_default();
            let target = Target::manifest(repository, &pushed.digest, &media_type, &body);
            let mut tags: Vec<&str> = extra_tags.iter().map(Tag::as_str).collect();
            if let Reference::Tag(tag) = reference {
                tags.insert(0, tag.as_str());
            }
            if tags.is_empty() {
                self.notify(cx, EventAction::Push, target).await;
            }
            for tag in tags {
                self.notify(cx, EventAction::Push, target.with_tag(tag))
                    .await;
            }
        }
        Ok(pushed)
    }

    async fn get_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let found = match reference {
            Reference::Tag(tag) => self.metadata.tagged_manifest(repository, tag).await?,
            Reference::Digest(digest) => self.metadata.manifest(repository, digest).await?,
        };
        // MANIFEST_UNKNOWN also for an unknown repository, as Distribution answers: Docker
        // then says "manifest for ... not found" rather than a bare "name unknown".
        let found = found.ok_or(RegistryError::ManifestUnknown)?;
        // A pull is a GET (a HEAD only asks whether it is there).
        let head = cx.request.as_ref().is_some_and(|r| r.method == "HEAD");
        if self.notifier.is_some() && !head {
            let target =
                Target::manifest(repository, &found.digest, &found.media_type, &found.payload);
            let target = match reference {
                Reference::Tag(tag) => target.with_tag(tag.as_str()),
                Reference::Digest(_) => target,
            };
            self.notify(cx, EventAction::Pull, target).await;
        }
        Ok(found)
    }

    async fn delete_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        self.check_deletable()?;
        // The digest a tag names, for its delete event (looked up only with endpoints).
        let tagged = match reference {
            Reference::Tag(tag) if self.notifier.is_some() => self
                .metadata
                .tagged_manifest(repository, tag)
                .await?
                .map(|m| m.digest),
            _ => None,
        };
        let deleted = match reference {
            Reference::Tag(tag) => self.metadata.delete_tag(repository, tag).await?,
            Reference::Digest(digest) => self.metadata.delete_manifest(repository, digest).await?,
        };
        if deleted {
            match (reference, &tagged) {
                (Reference::Digest(digest), _) => {
                    let target = Target::deleted_manifest(repository, digest);
                    self.notify(cx, EventAction::Delete, target).await;
                }
                (Reference::Tag(tag), Some(digest)) => {
                    let target =
                        Target::deleted_manifest(repository, digest).with_tag(tag.as_str());
                    self.notify(cx, EventAction::Delete, target).await;
                }
                (Reference::Tag(_), None) => {}
            }
            Ok(())
        } else {
            Err(RegistryError::ManifestUnknown)
        }
    }
}

impl Registry {
    /// Stores a manifest by `reference` (tagging it with the tag, if a tag, and
    /// `extra_tags`): validated, its digest checked, its bytes stored before its rows. For
    /// [`Origin::Cached`] (a manifest the pull-through mirror fetched from its upstream,
    /// whose content is fetched on demand after it) the references need not be in the
    /// repository yet.
    pub async fn store_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Bytes,
        origin: Origin,
    ) -> Result<PushedManifest, RegistryError> {
        self.check_writable()?;
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge {
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let digest = match reference {
            Reference::Digest(claimed) => {
                let actual = Digest::of(claimed.algorithm(), &body);
                if &actual != claimed {
                    return Err(RegistryError::digest_mismatch(claimed, &actual));
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &body),
        };
        let parsed = manifest::parse(&body, content_type)?;
        let mut tags: Vec<Tag> = extra_tags.to_vec();
        if let Reference::Tag(tag) = reference {
            tags.push(tag.clone());
        }
        // The manifest's bytes are a blob too: stored before the rows that name them, under
        // the digest's lock so the collector cannot remove them in between.
        let _blob = self.metadata.lock(LockKey::Blob(digest.clone())).await?;
        self.storage.put(&digest, body.clone()).await?;
        self.metadata
            .put_manifest(
                repository,
                &NewManifest {
                    digest: &digest,
                    media_type: &parsed.media_type,
                    artifact_type: parsed.artifact_type.as_deref(),
                    subject: parsed.subject.as_ref(),
                    annotations: parsed.annotations.as_deref(),
                    payload: &body,
                    references: &parsed.references,
                    tags: &tags,
                    origin,
                },
            )
            .await?;
        Ok(PushedManifest {
            digest,
            subject: parsed.subject,
        })
    }
}
