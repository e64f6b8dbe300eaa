-- Profiles: a user's picture (an http(s) URL) from their token or
-- `user:update`, and the sender's picture on each message as it was sent.
ALTER TABLE users ADD COLUMN avatar_url text;
ALTER TABLE messages ADD COLUMN sender_avatar text;
