-- Experiments (docs/journeys.md, "Branches and splits"): one row per enrollment and split
-- it drew a variant of, written with the split's log step (so once, even when the step's
-- activity is retried), and marked when the goal is met under the journey's goal rules
-- except "a marketing message was sent" (which a holdout cannot meet by design);
-- `counted` when the same goal also counted as one of the journey's headline conversions.
CREATE TABLE IF NOT EXISTS experiment_assignments (
    workflow_id  text        NOT NULL,
    split        text        NOT NULL,
    workspace    text        NOT NULL,
    journey_id   text        NOT NULL,
    version      int         NOT NULL,
    variant      text        NOT NULL,
    holdout      boolean     NOT NULL DEFAULT false,
    assigned_at  timestamptz NOT NULL,
    converted_at timestamptz,
    counted      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (workflow_id, split)
);
CREATE INDEX IF NOT EXISTS experiment_assignments_by_split
    ON experiment_assignments (workspace, journey_id, split, assigned_at)
    INCLUDE (variant, version, converted_at, counted);

-- Counters per variant, kept in the same transactions: what the winner check reads.
CREATE TABLE IF NOT EXISTS experiment_stats (
    workspace   text   NOT NULL,
    journey_id  text   NOT NULL,
    split       text   NOT NULL,
    variant     text   NOT NULL,
    entered     bigint NOT NULL DEFAULT 0,
    converted   bigint NOT NULL DEFAULT 0,
    counted     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, journey_id, split, variant)
);

-- A split's declared winner: once per split name, with the figures at that moment.
CREATE TABLE IF NOT EXISTS experiment_winners (
    workspace   text        NOT NULL,
    journey_id  text        NOT NULL,
    split       text        NOT NULL,
    variant     text        NOT NULL,
    version     int         NOT NULL,
    declared_at timestamptz NOT NULL DEFAULT now(),
    figures     jsonb       NOT NULL,
    PRIMARY KEY (workspace, journey_id, split)
);
