-- The sender (workers/sender.py) hands queued outbox rows to the providers, in a process
-- of its own (the API's, or `nurture sender`), so a worker that dies never leaves a
-- message half handed over. `next_attempt_at` is when a row is due (backoff after a
-- transient failure); a commit that queues a row wakes the sender.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at)
    WHERE status IN ('queued', 'sending');

CREATE OR REPLACE FUNCTION nurture_outbox_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nurture_outbox', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS outbox_queued ON outbox;
CREATE TRIGGER outbox_queued AFTER INSERT OR UPDATE OF status ON outbox
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION nurture_outbox_queued();
