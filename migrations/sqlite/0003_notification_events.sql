-- Notifications (`notifications.endpoints`): the persistent queue of events waiting for
-- delivery, one row per event and endpoint. `id` orders them (per repository, delivery
-- follows it). A delivery task claims rows by setting `lease_owner` (its instance id) and
-- `lease_until` (Unix milliseconds) in one conditional UPDATE; a delivered row is deleted.
CREATE TABLE notification_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT NOT NULL,
    repository  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX notification_events_by_endpoint ON notification_events (endpoint, id);
CREATE INDEX notification_events_by_repository ON notification_events (endpoint, repository, id);
