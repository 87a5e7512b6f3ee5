-- "Goal achieved in journey X" enrolls only the contacts X counts as conversions (a
-- marketing message sent, not suppressed, within the window): the goal change is queued
-- when a conversion is counted, no longer for every goal met.
DROP TRIGGER IF EXISTS enrollment_steps_queue_goals ON enrollment_steps;

CREATE OR REPLACE FUNCTION nurture_queue_conversion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_queue (workspace, contact_id, kind, name)
    VALUES (NEW.workspace, NEW.contact_id, 'goal', NEW.journey_id);
    PERFORM pg_notify('nurture_changes', '');
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER conversions_queue_goals AFTER INSERT ON conversions
    FOR EACH ROW EXECUTE FUNCTION nurture_queue_conversion();
