-- Uploads: the files a message carries, by the id in their URL
-- (`…/v1/uploads/<id>`), so the gateway finds the rooms a file was sent in
-- (whose members may read it) with one index lookup. A generated column:
-- right after every insert, delete (attachments cleared) and replay.
CREATE FUNCTION chat_upload_ids(attachments jsonb) RETURNS uuid[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT m[1]::uuid), '{}')
      FROM jsonb_array_elements(CASE jsonb_typeof(attachments) WHEN 'array' THEN attachments
                                ELSE '[]' END) a,
           regexp_matches(a->>'url',
               '/v1/uploads/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})', 'g') m
$$;

ALTER TABLE messages
    ADD COLUMN upload_ids uuid[] GENERATED ALWAYS AS (chat_upload_ids(attachments)) STORED;
CREATE INDEX messages_uploads ON messages USING gin (upload_ids) WHERE upload_ids <> '{}';
