-- Ingestion (issue 5): store, then deliver, durably.
--
-- Every committed change of a contact (its properties, its lists, its events) and every
-- goal met waits in `change_queue` until the relay has routed it. Triggers fill the queue
-- in the writer's own transaction, so every writer (the API, the worker's activities)
-- enqueues exactly what it commits and nobody can forget to. The relay turns each change
-- into `deliveries`: signals for the enrollments that care, and enrollment triggers, each
-- kept until Temporal has accepted it. Both tables are queues: rows leave when done.

CREATE TABLE IF NOT EXISTS change_queue (
    id          bigserial   PRIMARY KEY,
    workspace   text        NOT NULL,
    contact_id  text        NOT NULL,
    kind        text        NOT NULL,   -- contact | list | event | goal
    seq         bigint,                 -- contact: contacts.seq; event: events.seq
    name        text,                   -- event: its type; list: the list; goal: the journey
    changed     jsonb,                  -- contact: {property: new value, null if removed}
    created     boolean     NOT NULL DEFAULT false,  -- contact: the contact is new
    queued_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS deliveries (
    id              bigserial   PRIMARY KEY,
    workspace       text        NOT NULL,
    contact_id      text        NOT NULL,
    journey_id      text        NOT NULL,
    workflow_id     text        NOT NULL,
    kind            text        NOT NULL,   -- event | contact | enter | enter_after_goal
    seq             bigint      NOT NULL DEFAULT 0,  -- event: events.seq; otherwise 0
    generation      int         NOT NULL DEFAULT 0,  -- bumped when a newer change joins the row
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    failed_at       timestamptz,            -- set: Temporal refused it for good (dead letter)
    queued_at       timestamptz NOT NULL DEFAULT now(),
    -- One row per event and enrollment; one pending snapshot (`contact`) or trigger per
    -- enrollment: it reads the contact as it is when delivered.
    UNIQUE (workflow_id, kind, seq)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE failed_at IS NULL;

-- The relay LISTENs on this channel: a commit that queued a change wakes it at once.

CREATE OR REPLACE FUNCTION nurture_queue_new_contacts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_queue (workspace, contact_id, kind, seq, changed, created)
    SELECT workspace, id, 'contact', seq, properties, true FROM new_contacts;
    IF FOUND THEN
        PERFORM pg_notify('nurture_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER contacts_queue_inserts AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_queue_new_contacts();

-- A contact change is one whose seq moved; `changed` holds the properties whose values
-- differ (a removed property maps to null). A change of lists only has none: the list
-- triggers below queue it.
CREATE OR REPLACE FUNCTION nurture_queue_changed_contacts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_queue (workspace, contact_id, kind, seq, changed)
    SELECT workspace, id, 'contact', seq, changed
    FROM (
        SELECT n.workspace, n.id, n.seq,
               (SELECT coalesce(jsonb_object_agg(k, n.properties -> k), '{}')
                FROM (SELECT jsonb_object_keys(n.properties)
                      UNION SELECT jsonb_object_keys(o.properties)) AS keys(k)
                WHERE (n.properties -> k) IS DISTINCT FROM (o.properties -> k)) AS changed
        FROM new_contacts n
        JOIN old_contacts o ON o.workspace = n.workspace AND o.id = n.id
        WHERE n.seq IS DISTINCT FROM o.seq
    ) AS diff
    WHERE changed <> '{}';
    IF FOUND THEN
        PERFORM pg_notify('nurture_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER contacts_queue_updates AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_contacts NEW TABLE AS new_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_queue_changed_contacts();

CREATE OR REPLACE FUNCTION nurture_queue_list_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_queue (workspace, contact_id, kind, name)
    SELECT workspace, contact_id, 'list', list FROM changed_members;
    IF FOUND THEN
        PERFORM pg_notify('nurture_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER list_members_queue_inserts AFTER INSERT ON list_members
    REFERENCING NEW TABLE AS changed_members
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_queue_list_changes();

CREATE OR REPLACE TRIGGER list_members_queue_deletes AFTER DELETE ON list_members
    REFERENCING OLD TABLE AS changed_members
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_queue_list_changes();

CREATE OR REPLACE FUNCTION nurture_queue_new_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_queue (workspace, contact_id, kind, seq, name)
    SELECT workspace, contact_id, 'event', seq, type FROM new_events;
    IF FOUND THEN
        PERFORM pg_notify('nurture_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER events_queue_inserts AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION nurture_queue_new_events();

-- "Goal achieved in journey X" (DESIGN §3.9): the enrollment log row of a goal met, while
-- enrolled (an exit) or inside the attribution window. Row-level with WHEN, so the other
-- steps of the hot enrollment log pay nothing but the test.
CREATE OR REPLACE FUNCTION nurture_queue_goal_met() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_queue (workspace, contact_id, kind, name)
    VALUES (NEW.workspace, NEW.contact_id, 'goal', NEW.journey_id);
    PERFORM pg_notify('nurture_changes', '');
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER enrollment_steps_queue_goals AFTER INSERT ON enrollment_steps
    FOR EACH ROW
    WHEN (NEW.action = 'goal_met' OR (NEW.action = 'exit' AND NEW.result = 'goal_met'))
    EXECUTE FUNCTION nurture_queue_goal_met();
