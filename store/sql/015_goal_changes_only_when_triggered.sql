-- A counted conversion queues a `goal` change only when an active journey of the
-- workspace is entered by "goal achieved in" that journey: otherwise the relay would wake,
-- route and find nobody to enrol for every conversion (docs/performance.md).
CREATE OR REPLACE FUNCTION nurture_queue_conversion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM journeys j
        WHERE j.workspace = NEW.workspace AND j.status = 'active'
          AND j.definition -> 'trigger' ->> 'goal_achieved_in' = NEW.journey_id
    ) THEN
        INSERT INTO change_queue (workspace, contact_id, kind, name)
        VALUES (NEW.workspace, NEW.contact_id, 'goal', NEW.journey_id);
        PERFORM pg_notify('nurture_changes', '');
    END IF;
    RETURN NULL;
END $$;
