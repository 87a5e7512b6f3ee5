-- A trigger that keeps matching a refused contact (several changes routed for one entry,
-- two relays, a contact that joins and leaves) records its refusal once per reason: the
-- metrics count refused contacts, not how often a trigger looked at them. Refusals of an
-- explicit POST are each recorded (the caller asked each time).
ALTER TABLE refusals ADD COLUMN IF NOT EXISTS once boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX IF NOT EXISTS refusals_once
    ON refusals (workspace, journey_id, contact_id, reason) WHERE once;
