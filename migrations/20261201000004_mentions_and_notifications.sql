-- Mentions on messages, and each member's notification level per room
-- (which messages reach them while they are offline).
ALTER TABLE messages ADD COLUMN mentions uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE room_members ADD COLUMN notify text NOT NULL DEFAULT 'all'
    CHECK (notify IN ('all', 'mentions', 'none'));
