-- Search: a text-search vector per message, kept by PostgreSQL itself (a
-- generated column: right after every insert, edit, delete and replay,
-- with nothing for the persister to compute), and a GIN index on it.
--
-- Words are found by word ('simple' configuration: lower-cased, no
-- stemming, so every language is treated alike). Korean, Japanese and
-- Chinese are written without spaces between words, so their text is
-- indexed by every pair of neighbouring characters instead: a query of
-- two or more such characters is the pairs it is made of, and finds every
-- message holding them.
--
-- Every term is stored with its room in front ('lobby:hello'): a search
-- runs over the rooms of one user, and a term common in the whole
-- database (a greeting in a language most users write) then reads only
-- the matches in those rooms from the index, not every match everywhere.

-- Hangul (jamo, compatibility jamo, syllables), kana, CJK ideographs.
CREATE FUNCTION chat_cjk_class() RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '[ᄀ-ᇿ぀-ヿ㄰-㆏㐀-䶿一-鿿가-힯豈-﫿]'
$$;

-- The neighbouring pairs of characters of every run of CJK text, in
-- order, separated by spaces.
CREATE FUNCTION chat_cjk_pairs(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(substr(m.run[1], i, 2), ' '), '')
      FROM regexp_matches(t, '(' || chat_cjk_class() || '{2,})', 'g') AS m(run),
           generate_series(1, char_length(m.run[1]) - 1) AS i
$$;

-- The terms of a text, with their positions: its words, then its pairs.
CREATE FUNCTION chat_search_terms(t text) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsvector('simple', regexp_replace(t, chat_cjk_class(), ' ', 'g')
                                 || ' ' || chat_cjk_pairs(t))
$$;

-- A term of `room` as tsvector and tsquery input take it: quoted.
CREATE FUNCTION chat_search_term(room text, term text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '''' || replace(replace(room || ':' || term, '\', '\\'), '''', '''''') || ''''
$$;

-- A message of `room` as searched; NULL for a deleted one.
CREATE FUNCTION chat_search_vector(room text, t text) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT string_agg(chat_search_term(room, lexeme) || ':' || array_to_string(positions, ','), ' ')::tsvector
      FROM unnest(chat_search_terms(t))
$$;

-- A query over `rooms`: all of its terms, in any one of the rooms; NULL
-- (matching nothing) when it holds no term, such as a single CJK
-- character.
CREATE FUNCTION chat_search_query(q text, rooms text[]) RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT string_agg(every_term, ' | ')::tsquery
      FROM (SELECT '(' || string_agg(chat_search_term(room, t.lexeme), ' & ') || ')' AS every_term
              FROM unnest(rooms) AS room, unnest(chat_search_terms(q)) AS t
             GROUP BY room) x
$$;

ALTER TABLE messages
    ADD COLUMN search tsvector GENERATED ALWAYS AS (chat_search_vector(room_id, text)) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
-- The newest matches first, when a term is common in the user's rooms.
CREATE INDEX messages_created ON messages (created_at);
