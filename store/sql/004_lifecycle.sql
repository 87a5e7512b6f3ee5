-- Journey life cycle (issue 7): what changed in each version, and the durable batches
-- (activation, bulk unenroll) with their progress.

-- What an edit changed against the version before it: [{"path": ..., "change": ...}].
ALTER TABLE journey_versions ADD COLUMN IF NOT EXISTS changes jsonb NOT NULL DEFAULT '[]';

-- The per-owner journey limit counts by owner.
CREATE INDEX IF NOT EXISTS journeys_by_owner ON journeys (workspace, owner);

-- One row per batch a journey ran: `activate` enrolls every eligible contact when the
-- journey is activated; `unenroll` ends its running enrollments (deactivate or delete with
-- unenroll). The batch workflow's activity writes progress here after every chunk, in the
-- same transaction that advances `cursor`, so a batch resumes where it stopped.
CREATE TABLE IF NOT EXISTS journey_batches (
    workspace       text        NOT NULL,
    journey_id      text        NOT NULL,
    batch           int         NOT NULL,   -- 1, 2, ... per journey, over every kind
    kind            text        NOT NULL,   -- activate | unenroll
    workflow_id     text        NOT NULL UNIQUE,
    journey_version int         NOT NULL,
    status          text        NOT NULL DEFAULT 'running',  -- running | completed | stopped
    total           bigint,                 -- activate: eligible at the start; unenroll: running
    processed       bigint      NOT NULL DEFAULT 0,
    done            bigint      NOT NULL DEFAULT 0,          -- activate: started; unenroll: signalled
    skipped         jsonb       NOT NULL DEFAULT '{}',       -- reason -> count (refusals, gone)
    cursor          text        NOT NULL DEFAULT '',         -- the last contact id handled
    rate            real        NOT NULL,                    -- starts (signals) per second
    requested_by    text,
    stop_reason     text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (workspace, journey_id, batch)
);
