-- API keys: each belongs to one workspace; only a hash of the secret is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    id          text        PRIMARY KEY,
    workspace   text        NOT NULL,
    secret_hash text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
