-- The domains a workspace may send email from (`email_from` in its channel settings),
-- allowed by the operator: `nurture workspaces allow-sender-domain`.
CREATE TABLE IF NOT EXISTS sender_domains (
    workspace  text        NOT NULL,
    domain     text        NOT NULL,
    allowed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, domain)
);
