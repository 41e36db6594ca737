-- Each repository's tag names, joined by newlines in byte-wise order: `tags/list` reads
-- one value instead of stepping through a row per tag. A cache of `tags`, never the truth:
-- a row is deleted (by the triggers below) whenever a tag of its repository is created,
-- removed or renamed, however that happens (a push, a delete, a cascade from a deleted
-- manifest, the collector, an import), and written again by the next tag write through the
-- store. A repository without a row is listed from `tags` directly, as before.
CREATE TABLE tag_lists (
    repository_id INTEGER PRIMARY KEY REFERENCES repositories (id) ON DELETE CASCADE,
    names         TEXT NOT NULL
);

CREATE TRIGGER tags_inserted_forget_list AFTER INSERT ON tags BEGIN
    DELETE FROM tag_lists WHERE repository_id = NEW.repository_id;
END;

CREATE TRIGGER tags_deleted_forget_list AFTER DELETE ON tags BEGIN
    DELETE FROM tag_lists WHERE repository_id = OLD.repository_id;
END;

CREATE TRIGGER tags_renamed_forget_list AFTER UPDATE OF repository_id, name ON tags BEGIN
    DELETE FROM tag_lists WHERE repository_id IN (OLD.repository_id, NEW.repository_id);
END;
