-- Each repository's tag names, joined by newlines in byte-wise order (as
-- migrations/sqlite/0004): `tags/list` reads one value instead of a row per tag. A cache of
-- `tags`, never the truth: the trigger below deletes a repository's row whenever one of its
-- tags is created, removed or renamed, however that happens, and the next tag write through
-- the store writes it again. A repository without a row is listed from `tags` directly.
CREATE TABLE tag_lists (
    repository_id BIGINT PRIMARY KEY REFERENCES repositories (id) ON DELETE CASCADE,
    names         TEXT COLLATE "C" NOT NULL
);

CREATE FUNCTION forget_tag_list() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM tag_lists WHERE repository_id = OLD.repository_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        DELETE FROM tag_lists WHERE repository_id = NEW.repository_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tags_forget_list AFTER INSERT OR DELETE OR UPDATE OF repository_id, name ON tags
    FOR EACH ROW EXECUTE FUNCTION forget_tag_list();
