-- An enrollment that ends leaves no message queued behind it (docs/reliability.md): when
-- its outcome is first set, its outbox rows the sender has not begun are withdrawn, as
-- the send's own cancellation withdraws them. That cancellation covers the usual exit;
-- this covers a send that could not hear it: its worker died (the activity timed out), or
-- it failed after its commit just as the exit cancelled it (Temporal does not retry it).
-- Rows the sender has begun (`sending`) are left to it.
CREATE OR REPLACE FUNCTION nurture_withdraw_when_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox SET status = 'withdrawn', last_error = 'the enrollment ended before it was sent'
    WHERE workflow_id = NEW.workflow_id AND status = 'queued';
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS enrollments_withdraw_when_ended ON enrollments;
CREATE TRIGGER enrollments_withdraw_when_ended
AFTER UPDATE OF outcome ON enrollments
FOR EACH ROW WHEN (OLD.outcome IS NULL AND NEW.outcome IS NOT NULL)
EXECUTE FUNCTION nurture_withdraw_when_ended();
