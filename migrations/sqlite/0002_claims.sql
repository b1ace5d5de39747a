-- Claims: which worker holds a request, since when and until when.
ALTER TABLE requests ADD COLUMN claimed_by TEXT;
ALTER TABLE requests ADD COLUMN claim_since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN claim_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS requests_claimable ON requests (updated_at) WHERE needs_work = 1;

-- Every period a worker held a request, for audit.
CREATE TABLE IF NOT EXISTS claim_history (
    request_id TEXT NOT NULL,
    worker     TEXT NOT NULL,
    held_since INTEGER NOT NULL,
    held_until INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS claim_history_request ON claim_history (request_id, held_since);

-- Leases on periodic jobs, so one worker at a time runs each.
CREATE TABLE IF NOT EXISTS leases (
    job        TEXT PRIMARY KEY NOT NULL,
    worker     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
