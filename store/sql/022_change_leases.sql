-- A routing pass leases the changes it claims instead of holding them in a transaction
-- (docs/performance.md, "A third pass"): the claim is one statement, and the deliveries it
-- routed are queued in the statement that deletes the claimed changes, so that a pass is
-- two statements (and its reads) where it was four. A relay that dies in between leaves
-- its changes leased: another claims them when the lease ends.
ALTER TABLE change_queue ADD COLUMN IF NOT EXISTS leased_until timestamptz;
