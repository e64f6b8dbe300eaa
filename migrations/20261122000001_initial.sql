-- The chat schema. Only the persister writes these tables; every row can be
-- rebuilt from the job stream (see docs/architecture.md).

CREATE TABLE rooms (
    id              text PRIMARY KEY,
    name            text,
    kind            text NOT NULL CHECK (kind IN ('group', 'direct')),
    public          boolean NOT NULL,
    owner_id        uuid,
    -- The last seq handed out in this room; the next message gets last_seq + 1.
    last_seq        bigint NOT NULL DEFAULT 0,
    last_message_at timestamptz,
    created_at      timestamptz NOT NULL
);

CREATE TABLE room_members (
    room_id   text NOT NULL REFERENCES rooms (id),
    user_id   uuid NOT NULL,
    user_name text NOT NULL,
    role      text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at timestamptz NOT NULL,
    -- The user's read mark: the highest seq they have read; only moves forward.
    read_seq  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);

-- "Which rooms is this user in" is asked on every connect.
CREATE INDEX room_members_by_user ON room_members (user_id);

CREATE TABLE messages (
    id          uuid PRIMARY KEY,
    room_id     text NOT NULL REFERENCES rooms (id),
    seq         bigint NOT NULL,
    sender_id   uuid NOT NULL,
    sender_name text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('text', 'emoji', 'image', 'file')),
    text        text,
    reply_to    uuid,
    attachments jsonb NOT NULL DEFAULT '[]',
    temp_id     uuid NOT NULL,
    client_id   text,
    created_at  timestamptz NOT NULL,
    edited_at   timestamptz,
    deleted_at  timestamptz,
    -- The job's sequence in the stream: where a replay finds it.
    stream_seq  bigint NOT NULL,
    CONSTRAINT messages_room_seq UNIQUE (room_id, seq)
);

-- The same client_id from the same user is stored once, however late the retry.
CREATE UNIQUE INDEX messages_sender_client_id ON messages (sender_id, client_id)
    WHERE client_id IS NOT NULL;

-- The gateway reads with a role that cannot write. Creating it needs
-- CREATEROLE; where the migrating role lacks it, an operator creates the
-- role and the grants below are applied when it exists.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_gateway') THEN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            BEGIN
                CREATE ROLE chat_gateway LOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                -- another database's migration created it at the same moment
                NULL;
            END;
        END IF;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_gateway') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO chat_gateway', current_database());
        GRANT USAGE ON SCHEMA public TO chat_gateway;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO chat_gateway;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO chat_gateway;
    END IF;
END
$$;
