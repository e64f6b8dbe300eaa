-- Bans: who may not join, be invited or send in a room, until when (NULL:
-- for good). The gateway reads the stream first (a ban counts from its
-- ack); this table answers once the stream no longer holds the ban job.
CREATE TABLE room_bans (
    room_id    text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    until      timestamptz,
    by_id      uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_gateway') THEN
        GRANT SELECT ON room_bans TO chat_gateway;
    END IF;
END
$$;
