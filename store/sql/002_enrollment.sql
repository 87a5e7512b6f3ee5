-- The enrollment workflow's additions (issue 4).

-- The contact change at which an enrollment left with goal_met: a goal met after another
-- journey ended counts for the journey still running (DESIGN §3.6), whichever of the two
-- enrollments writes first.
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS goal_met_seq bigint;

-- The enrollment log is read per enrollment, in step order (its primary key serves that);
-- the outbox is read per enrollment by the log and the tests.
CREATE INDEX IF NOT EXISTS outbox_by_workflow ON outbox (workflow_id);
