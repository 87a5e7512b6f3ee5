-- Metrics read models (issue 6). GET /v1/journeys/{id}/metrics reads counters, never
-- scans enrollments: each counter changes in the transaction that changes what it counts.
--
-- `journey_counters` holds one row per (journey, key):
--   enrolled                 enrollments ever
--   status:<status>          enrollments per status (running | in_attribution_window | completed)
--   ended:<outcome>          enrollments per outcome (an end or an exit)
--   refused:<reason>         refusals per reason
--   epoch:<n>:enrolled       enrollments that started in goal epoch n
--   epoch:<n>:conversions    goal conversions counted in goal epoch n
-- Statement-level triggers with transition tables keep them: a bulk insert (activation,
-- COPY) adds once per key, not once per row; keys are locked in one order (no deadlocks).

CREATE TABLE IF NOT EXISTS journey_counters (
    workspace   text   NOT NULL,
    journey_id  text   NOT NULL,
    key         text   NOT NULL,
    n           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, journey_id, key)
);

CREATE TABLE IF NOT EXISTS list_counters (
    workspace   text   NOT NULL,
    list        text   NOT NULL,
    members     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, list)
);

CREATE TABLE IF NOT EXISTS workspace_counters (
    workspace   text   PRIMARY KEY,
    contacts    bigint NOT NULL DEFAULT 0
);

-- What one enrollment row contributes to the counters.
CREATE OR REPLACE FUNCTION nurture_enrollment_keys(status text, outcome text, goal_epoch int)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT array_remove(ARRAY[
        'enrolled',
        'status:' || status,
        'epoch:' || goal_epoch || ':enrolled',
        CASE WHEN outcome IS NOT NULL THEN 'ended:' || outcome END
    ], NULL)
$$;

CREATE OR REPLACE FUNCTION nurture_count_enrollments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
        SELECT workspace, journey_id, key, count(*)
        FROM new_rows, unnest(nurture_enrollment_keys(status, outcome, goal_epoch)) AS key
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
        SELECT workspace, journey_id, key, -count(*)
        FROM old_rows, unnest(nurture_enrollment_keys(status, outcome, goal_epoch)) AS key
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
        SELECT workspace, journey_id, key, sum(d)
        FROM (
            SELECT workspace, journey_id, key, 1 AS d
            FROM new_rows, unnest(nurture_enrollment_keys(status, outcome, goal_epoch)) AS key
            UNION ALL
            SELECT workspace, journey_id, key, -1
            FROM old_rows, unnest(nurture_enrollment_keys(status, outcome, goal_epoch)) AS key
        ) AS change
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER enrollments_count_inserts AFTER INSERT ON enrollments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_enrollments();
CREATE OR REPLACE TRIGGER enrollments_count_updates AFTER UPDATE ON enrollments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_enrollments();
CREATE OR REPLACE TRIGGER enrollments_count_deletes AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_enrollments();

CREATE OR REPLACE FUNCTION nurture_count_refusals() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
    SELECT workspace, journey_id, 'refused:' || reason, count(*)
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER refusals_count_inserts AFTER INSERT ON refusals
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_refusals();

-- Conversions are inserted ON CONFLICT DO NOTHING: the transition table holds only the
-- rows really inserted, so a contact counts once per journey and goal epoch.
CREATE OR REPLACE FUNCTION nurture_count_conversions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
    SELECT workspace, journey_id, 'epoch:' || goal_epoch || ':conversions', count(*)
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER conversions_count_inserts AFTER INSERT ON conversions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_conversions();

CREATE OR REPLACE FUNCTION nurture_count_list_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO list_counters AS c (workspace, list, members)
        SELECT workspace, list, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (workspace, list) DO UPDATE SET members = c.members + excluded.members;
    ELSE
        INSERT INTO list_counters AS c (workspace, list, members)
        SELECT workspace, list, -count(*) FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (workspace, list) DO UPDATE SET members = c.members + excluded.members;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER list_members_count_inserts AFTER INSERT ON list_members
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_list_members();
CREATE OR REPLACE TRIGGER list_members_count_deletes AFTER DELETE ON list_members
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_list_members();

CREATE OR REPLACE FUNCTION nurture_count_contacts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO workspace_counters AS c (workspace, contacts)
        SELECT workspace, count(*) FROM new_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (workspace) DO UPDATE SET contacts = c.contacts + excluded.contacts;
    ELSE
        INSERT INTO workspace_counters AS c (workspace, contacts)
        SELECT workspace, -count(*) FROM old_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (workspace) DO UPDATE SET contacts = c.contacts + excluded.contacts;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER contacts_count_inserts AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_contacts();
CREATE OR REPLACE TRIGGER contacts_count_deletes AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_count_contacts();

-- Every move out of or into a stage, dated and tagged with the enrollment's start, for
-- metrics over a window of enrollment dates (?since=&until=): the cohort's stage paths.
-- from_stage NULL: the enrollment's first stage entry.
CREATE TABLE IF NOT EXISTS stage_moves (
    workspace   text        NOT NULL,
    journey_id  text        NOT NULL,
    enrolled_at timestamptz NOT NULL,
    at          timestamptz NOT NULL,
    from_stage  text,
    to_node     text        NOT NULL
);
CREATE INDEX IF NOT EXISTS stage_moves_by_cohort
    ON stage_moves (workspace, journey_id, enrolled_at) INCLUDE (from_stage, to_node);

-- Cohort reads of enrollments and conversions over a window of enrollment dates.
CREATE INDEX IF NOT EXISTS enrollments_by_start
    ON enrollments (workspace, journey_id, enrolled_at)
    INCLUDE (status, outcome, stage, goal_epoch, contact_id);
CREATE INDEX IF NOT EXISTS refusals_by_time ON refusals (workspace, journey_id, refused_at);

-- Counters for what exists already.
INSERT INTO journey_counters (workspace, journey_id, key, n)
SELECT workspace, journey_id, key, count(*)
FROM enrollments, unnest(nurture_enrollment_keys(status, outcome, goal_epoch)) AS key
GROUP BY 1, 2, 3
ON CONFLICT DO NOTHING;
INSERT INTO journey_counters (workspace, journey_id, key, n)
SELECT workspace, journey_id, 'refused:' || reason, count(*) FROM refusals GROUP BY 1, 2, 3
ON CONFLICT DO NOTHING;
INSERT INTO journey_counters (workspace, journey_id, key, n)
SELECT workspace, journey_id, 'epoch:' || goal_epoch || ':conversions', count(*)
FROM conversions GROUP BY 1, 2, 3
ON CONFLICT DO NOTHING;
INSERT INTO list_counters (workspace, list, members)
SELECT workspace, list, count(*) FROM list_members GROUP BY 1, 2
ON CONFLICT DO NOTHING;
INSERT INTO workspace_counters (workspace, contacts)
SELECT workspace, count(*) FROM contacts GROUP BY 1
ON CONFLICT DO NOTHING;
