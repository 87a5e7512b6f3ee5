-- Journeys that may repeat (docs/journeys.md, "Re-entry"): a contact's entries into a
-- journey are numbered; the first keeps every existing row and workflow id as it was.
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS entry int NOT NULL DEFAULT 1;
-- The idempotency key of the event that started the entry (event-triggered journeys): a
-- burst of the same event creates one entry.
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS trigger_key text;
ALTER TABLE enrollments DROP CONSTRAINT IF EXISTS enrollments_pkey;
ALTER TABLE enrollments ADD CONSTRAINT enrollments_pkey
    PRIMARY KEY (workspace, journey_id, contact_id, entry);
CREATE UNIQUE INDEX IF NOT EXISTS enrollments_by_trigger
    ON enrollments (workspace, journey_id, trigger_key) WHERE trigger_key IS NOT NULL;
-- One entry of a contact runs the journey's actions at a time.
CREATE UNIQUE INDEX IF NOT EXISTS enrollments_one_running
    ON enrollments (workspace, journey_id, contact_id) WHERE status = 'running';

-- Counters: `profiles` counts contacts (their first entry), `enrolled` every entry.
CREATE OR REPLACE FUNCTION nurture_enrollment_keys(
    status text, outcome text, goal_epoch int, entry int
) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT array_remove(ARRAY[
        'enrolled',
        'status:' || status,
        'epoch:' || goal_epoch || ':enrolled',
        CASE WHEN outcome IS NOT NULL THEN 'ended:' || outcome END,
        CASE WHEN entry = 1 THEN 'profiles' END,
        CASE WHEN entry = 1 THEN 'epoch:' || goal_epoch || ':profiles' END
    ], NULL)
$$;

CREATE OR REPLACE FUNCTION nurture_count_enrollments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
        SELECT workspace, journey_id, key, count(*)
        FROM new_rows, unnest(nurture_enrollment_keys(status, outcome, goal_epoch, entry)) AS key
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
        SELECT workspace, journey_id, key, -count(*)
        FROM old_rows, unnest(nurture_enrollment_keys(status, outcome, goal_epoch, entry)) AS key
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
        SELECT workspace, journey_id, key, sum(d)
        FROM (
            SELECT workspace, journey_id, key, 1 AS d
            FROM new_rows,
                 unnest(nurture_enrollment_keys(status, outcome, goal_epoch, entry)) AS key
            UNION ALL
            SELECT workspace, journey_id, key, -1
            FROM old_rows,
                 unnest(nurture_enrollment_keys(status, outcome, goal_epoch, entry)) AS key
        ) AS change
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

-- Every enrollment before this migration is a first entry.
INSERT INTO journey_counters AS c (workspace, journey_id, key, n)
SELECT workspace, journey_id, key, count(*)
FROM enrollments,
     unnest(ARRAY['profiles', 'epoch:' || goal_epoch || ':profiles']) AS key
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (workspace, journey_id, key) DO UPDATE SET n = c.n + excluded.n;
