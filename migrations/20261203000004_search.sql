-- Search: a text-search vector per message and a GIN index on it. The
-- persister writes the vector with the message, its edits and its delete
-- (NULL: never found), from the same tokenizer the gateway builds queries
-- with (see the shared crate's `search` module): words lower-cased, and
-- the neighbouring pairs of characters of Korean, Japanese and Chinese
-- text, each term with its room in front so that a search of one user's
-- rooms reads only their part of the index. Rows written before this
-- migration are filled in by the persister at start.
ALTER TABLE messages ADD COLUMN search tsvector;
CREATE INDEX messages_search ON messages USING gin (search);
-- Terms are per room, so there are many: the planner keeps the frequency
-- of ten times as many of them (a common term in a user's rooms is read
-- newest first rather than through the index).
ALTER TABLE messages ALTER COLUMN search SET STATISTICS 1000;
-- The newest matches first, when a term is common in the user's rooms.
CREATE INDEX messages_created ON messages (created_at);
-- The messages of before this migration, which the persister fills in at
-- start: finding none is then one look at an (empty) index, not a scan.
CREATE INDEX messages_unsearched ON messages (id) WHERE search IS NULL AND text IS NOT NULL;
