-- Fair sharing between workspaces (docs/reliability.md, "Security"): the relay and the
-- sender take each workspace's oldest work in turn, so a flood from one workspace does not
-- queue another's behind it. These indexes let them find, per workspace, its oldest due
-- rows without scanning the others'.
CREATE INDEX IF NOT EXISTS change_queue_by_workspace ON change_queue (workspace, id);
CREATE INDEX IF NOT EXISTS deliveries_due_by_workspace ON deliveries (workspace, next_attempt_at, id)
    WHERE failed_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_due_by_workspace ON outbox (workspace, next_attempt_at)
    WHERE status IN ('queued', 'sending');
