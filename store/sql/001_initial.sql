-- nurture schema. Every row is scoped by workspace. One global sequence orders every
-- contact change and event, so an enrollment can carry a watermark (DESIGN §4).

CREATE SEQUENCE IF NOT EXISTS change_seq;

CREATE TABLE IF NOT EXISTS journeys (
    workspace   text        NOT NULL,
    id          text        NOT NULL,
    name        text        NOT NULL,
    owner       text        NOT NULL,
    status      text        NOT NULL DEFAULT 'draft',   -- draft | active | inactive
    version     int         NOT NULL DEFAULT 1,
    ever_active boolean     NOT NULL DEFAULT false,
    goal_epoch  int         NOT NULL DEFAULT 1,
    definition  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, id)
);

CREATE TABLE IF NOT EXISTS journey_versions (
    workspace   text        NOT NULL,
    journey_id  text        NOT NULL,
    version     int         NOT NULL,
    definition  jsonb       NOT NULL,
    changed_by  text        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, journey_id, version)
);

CREATE TABLE IF NOT EXISTS contacts (
    workspace   text        NOT NULL,
    id          text        NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}',
    seq         bigint      NOT NULL DEFAULT nextval('change_seq'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, id)
);

CREATE TABLE IF NOT EXISTS list_members (
    workspace   text        NOT NULL,
    list        text        NOT NULL,
    contact_id  text        NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, list, contact_id)
);
CREATE INDEX IF NOT EXISTS list_members_by_contact ON list_members (workspace, contact_id);

CREATE TABLE IF NOT EXISTS events (
    workspace       text        NOT NULL,
    seq             bigint      NOT NULL DEFAULT nextval('change_seq'),
    id              text        NOT NULL,
    idempotency_key text        NOT NULL,
    contact_id      text        NOT NULL,
    type            text        NOT NULL,
    target          text,
    properties      jsonb       NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, seq),
    UNIQUE (workspace, idempotency_key)
);
CREATE INDEX IF NOT EXISTS events_by_contact ON events (workspace, contact_id, type);

-- One enrollment per contact per journey, ever (DESIGN §3.1).
CREATE TABLE IF NOT EXISTS enrollments (
    workspace       text        NOT NULL,
    journey_id      text        NOT NULL,
    contact_id      text        NOT NULL,
    workflow_id     text        NOT NULL UNIQUE,
    journey_version int         NOT NULL,
    goal_epoch      int         NOT NULL DEFAULT 1,
    status          text        NOT NULL DEFAULT 'running', -- running | in_attribution_window | completed
    stage           text,
    outcome         text,       -- success | failure | goal_met | suppressed | removed_from_list | ended_early | unenrolled | loop_limit | ...
    end_value       text,
    marketing_sent  boolean     NOT NULL DEFAULT false,
    enrolled_at     timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    completed_at    timestamptz,
    PRIMARY KEY (workspace, journey_id, contact_id)
);
CREATE INDEX IF NOT EXISTS enrollments_by_contact ON enrollments (workspace, contact_id) WHERE status <> 'completed';
CREATE INDEX IF NOT EXISTS enrollments_by_status ON enrollments (workspace, journey_id, status, outcome);

-- Contacts refused at enrollment, with the reason (DESIGN §3.2). Never counted as enrolled.
CREATE TABLE IF NOT EXISTS refusals (
    workspace   text        NOT NULL,
    journey_id  text        NOT NULL,
    contact_id  text        NOT NULL,
    reason      text        NOT NULL,
    explanation jsonb,
    refused_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refusals_by_journey ON refusals (workspace, journey_id, reason);

-- The enrollment log: one row per step; (workflow_id, step_seq) makes a retried activity a no-op.
CREATE TABLE IF NOT EXISTS enrollment_steps (
    workflow_id text        NOT NULL,
    step_seq    int         NOT NULL,
    workspace   text        NOT NULL,
    journey_id  text        NOT NULL,
    contact_id  text        NOT NULL,
    at          timestamptz NOT NULL,
    stage       text,
    action      text        NOT NULL,   -- enter_stage | send_message | wait | ... | exit | end | goal_met
    result      text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (workflow_id, step_seq)
);

-- Everything that leaves the building: messages, tasks, notifications. Unique key = once.
CREATE TABLE IF NOT EXISTS outbox (
    idempotency_key text        PRIMARY KEY,  -- {workflow_id}:{step_seq}
    workspace       text        NOT NULL,
    workflow_id     text        NOT NULL,
    journey_id      text        NOT NULL,
    contact_id      text        NOT NULL,
    kind            text        NOT NULL,     -- message | task | notification
    channel         text,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_by_kind ON outbox (workspace, kind, created_at);

-- Read models for metrics, written in the same transaction as the step log.
CREATE TABLE IF NOT EXISTS stage_stats (
    workspace   text   NOT NULL,
    journey_id  text   NOT NULL,
    stage       text   NOT NULL,
    entered     bigint NOT NULL DEFAULT 0,
    active      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, journey_id, stage)
);

CREATE TABLE IF NOT EXISTS stage_paths (
    workspace   text   NOT NULL,
    journey_id  text   NOT NULL,
    from_stage  text   NOT NULL,
    to_node     text   NOT NULL,   -- a stage key, or end:success / end:failure:<value> / exit:<outcome>
    count       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, journey_id, from_stage, to_node)
);

-- Goal conversions: a contact counts once per journey and goal epoch (DESIGN §3.6-3.7).
CREATE TABLE IF NOT EXISTS conversions (
    workspace    text        NOT NULL,
    journey_id   text        NOT NULL,
    contact_id   text        NOT NULL,
    goal_epoch   int         NOT NULL,
    converted_at timestamptz NOT NULL,
    PRIMARY KEY (workspace, journey_id, contact_id, goal_epoch)
);
