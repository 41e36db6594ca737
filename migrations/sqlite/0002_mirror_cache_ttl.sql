-- The pull-through mirror's cache expiry (`proxy.ttl`): for a manifest the mirror fetched
-- from an upstream, when it was last pulled and how long it is kept after that (seconds;
-- NULL: forever). Both NULL for pushed manifests, which never expire.
ALTER TABLE manifests ADD COLUMN last_pulled INTEGER;
ALTER TABLE manifests ADD COLUMN cache_ttl INTEGER;
