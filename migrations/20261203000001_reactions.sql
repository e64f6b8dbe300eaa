-- Reactions: one row per user, emoji and message. Keyed by the message
-- first, so a message's reactions are one index range (history reads them
-- for every message it returns).
CREATE TABLE message_reactions (
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji      text NOT NULL,
    user_id    uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_gateway') THEN
        GRANT SELECT ON message_reactions TO chat_gateway;
    END IF;
END
$$;
