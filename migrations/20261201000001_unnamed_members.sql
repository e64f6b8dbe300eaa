-- Any UUID names a user: one can be added to a room before they ever
-- connected, when nobody knows their name yet. Their name comes from the
-- users table once they are seen.
ALTER TABLE room_members ALTER COLUMN user_name DROP NOT NULL;
