-- An API process with a relay of its own hands the events it stores to that relay
-- (docs/performance.md, "A sixth pass"): the statement that appends them queues their
-- changes itself, already leased to that relay, and reads what routing needs, so that the
-- relay signals them without a notification, a wake-up and a claim. Those events are
-- marked `handed_off`, and the events trigger queues (and notifies) only the others. A
-- relay that dies before it signals them leaves its lease to run out, as a claim's.
ALTER TABLE events ADD COLUMN IF NOT EXISTS handed_off boolean;

CREATE OR REPLACE FUNCTION nurture_queue_new_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_queue (workspace, contact_id, kind, seq, name)
    SELECT workspace, contact_id, 'event', seq, type FROM new_events
    WHERE handed_off IS NOT TRUE;
    IF FOUND THEN
        PERFORM pg_notify('nurture_changes', '');
    END IF;
    RETURN NULL;
END $$;
