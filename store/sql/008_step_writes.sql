-- What a step's property writes came to, kept with the step so that a retried activity
-- (the row is there, its effects are not run again) still tells the workflow.
ALTER TABLE enrollment_steps
    ADD COLUMN IF NOT EXISTS contact_seq bigint,
    ADD COLUMN IF NOT EXISTS refused_writes text[];
