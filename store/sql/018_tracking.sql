-- Email engagement (docs/channels.md, "Tracking"): each tracked email, by the id its
-- tokens carry, with the URLs of its links (a click can redirect only to one of them).
CREATE TABLE IF NOT EXISTS tracked_messages (
    id              bytea       PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    workspace       text        NOT NULL,
    journey_id      text        NOT NULL,
    contact_id      text        NOT NULL,
    workflow_id     text        NOT NULL,
    stage           text,
    template        text        NOT NULL,
    marketing       boolean     NOT NULL,
    links           jsonb       NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tracked_messages_by_journey
    ON tracked_messages (workspace, journey_id);
CREATE INDEX IF NOT EXISTS tracked_messages_by_template
    ON tracked_messages (workspace, template);

-- Opens, clicks and unsubscribes per message, apart for people and for machines: the
-- first of each is the unique one; `hits` counts repeats.
CREATE TABLE IF NOT EXISTS tracked_hits (
    message_id  bytea       NOT NULL,
    kind        text        NOT NULL,   -- o | c | u
    human       boolean     NOT NULL,
    first_at    timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now(),
    last_link   int,
    hits        int         NOT NULL DEFAULT 1,
    PRIMARY KEY (message_id, kind, human)
);
