-- Threads: a reply names its root; the root's summary ({count, last_at})
-- is computed when read, so it is right however replies arrive, and after
-- any replay, with no counter to keep.
ALTER TABLE messages ADD COLUMN thread_of uuid;
CREATE INDEX messages_thread ON messages (thread_of, seq) WHERE thread_of IS NOT NULL;

-- A root's thread as clients see it, `null` without replies. A function,
-- so that every query selecting messages names its row the same way.
CREATE FUNCTION message_thread(root uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) = 0 THEN NULL ELSE jsonb_build_object(
               'count', count(*),
               'last_at', to_char(max(created_at) AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
           END
      FROM messages WHERE thread_of = root AND deleted_at IS NULL
$$;
