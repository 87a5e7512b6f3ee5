-- Channels (issue 8): templates, per-workspace channel settings, delivery state on the
-- outbox, the frequency cap's reservations, and the dev SMTP sink's mailbox.

-- Message templates, per workspace: `subject` + `html` + `text` for email, `text` for
-- SMS/WhatsApp. Jinja2 source, checked when saved.
CREATE TABLE IF NOT EXISTS templates (
    workspace   text        NOT NULL,
    name        text        NOT NULL,
    subject     text,
    html        text,
    text        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, name)
);

-- Where a workspace's SMS, WhatsApp, tasks and notifications go, and its send rules.
CREATE TABLE IF NOT EXISTS channel_settings (
    workspace       text        PRIMARY KEY,
    webhook_url     text,
    webhook_secret  text,
    email_from      text,
    timezone        text        NOT NULL DEFAULT 'UTC',
    send_window     jsonb,      -- SendWindow, or null: any time
    frequency_cap   jsonb,      -- {"max": n, "per": "P1D"}, or null: no cap
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Delivery state of each outbox row: a retried activity delivers only rows still queued.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'queued';
    -- queued | delivered | failed | kept (no channel configured: recorded only)
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS attempts int NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS answer jsonb;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS failed_at timestamptz;

-- Marketing messages counted by the frequency cap: one row per send_message step that
-- passed the cap (reserved under a per-contact advisory lock, so two journeys racing for
-- one contact cannot both pass). `sent_at` is the workflow's time of the step.
CREATE TABLE IF NOT EXISTS marketing_sends (
    idempotency_key text        PRIMARY KEY,
    workspace       text        NOT NULL,
    contact_id      text        NOT NULL,
    sent_at         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS marketing_sends_by_contact
    ON marketing_sends (workspace, contact_id, sent_at);

-- What the dev SMTP sink (`nurture dev`) received: GET /v1/messages shows it.
CREATE TABLE IF NOT EXISTS dev_mailbox (
    id              bigserial   PRIMARY KEY,
    workspace       text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    mail_from       text        NOT NULL,
    rcpt_to         text[]      NOT NULL,
    subject         text,
    message_id      text,
    idempotency_key text,
    text            text,
    html            text,
    headers         jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS dev_mailbox_by_workspace ON dev_mailbox (workspace, id);
