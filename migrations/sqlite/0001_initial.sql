-- Ferry's metadata: what exists in which repository. Blob bytes live in blob storage;
-- a row here is written only after the bytes it describes are durable.
-- Timestamps are Unix seconds. Text compares byte-wise (SQLite's BINARY collation),
-- which is the order pagination uses.

CREATE TABLE registry_info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE repositories (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Every committed blob (layers, configs and the manifests' own bytes).
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    -- Refreshed when the blob is uploaded, linked, mounted or asked about: the garbage
    -- collector leaves alone anything used within its grace window.
    last_used  INTEGER NOT NULL
);

-- Blobs a repository may serve and reference (Distribution's `_layers` links).
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT NOT NULL REFERENCES blobs (digest),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    size          INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repository_id, subject);
CREATE INDEX manifests_by_digest ON manifests (digest);

-- What each manifest needs: its config and layers (blobs) or children (manifests).
CREATE TABLE manifest_references (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    child_digest    TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('config', 'layer', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, kind, child_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_by_child ON manifest_references (child_digest);

CREATE TABLE tags (
    repository_id   INTEGER NOT NULL,
    name            TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_by_manifest ON tags (repository_id, manifest_digest);

-- Upload sessions: all the state needed to continue an upload after a restart.
CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    repository   TEXT NOT NULL,
    size         INTEGER NOT NULL,
    -- Saved sha256 state after `size` bytes (NULL: recompute from the staged bytes).
    hash_state   BLOB,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX uploads_by_start ON uploads (started_at);
