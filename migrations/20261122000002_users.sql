-- Users as last seen in a job, so members can be named by id (room:create,
-- room:invite). Written only by the persister.
CREATE TABLE users (
    id      uuid PRIMARY KEY,
    name    text NOT NULL,
    seen_at timestamptz NOT NULL
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_gateway') THEN
        GRANT SELECT ON users TO chat_gateway;
    END IF;
END
$$;
