-- System messages from the application's backend (`kind: "system"`,
-- sent by the service itself).
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('text', 'emoji', 'image', 'file', 'system'));
