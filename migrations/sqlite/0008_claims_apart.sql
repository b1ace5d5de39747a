-- Claims live in a table of their own. SQLite writes a whole row for any change to it, so a
-- claim, a renewal or a release stamped on the request's row rewrote its body (kilobytes, on
-- overflow pages) each time: a reconcile pass wrote every request it looked at twice.
CREATE TABLE IF NOT EXISTS request_claims (
    request_id  TEXT PRIMARY KEY NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    claimed_by  TEXT NOT NULL,
    claim_since INTEGER NOT NULL,
    claim_until INTEGER NOT NULL
);
INSERT INTO request_claims (request_id, claimed_by, claim_since, claim_until)
    SELECT id, claimed_by, claim_since, claim_until FROM requests WHERE claimed_by IS NOT NULL;
ALTER TABLE requests DROP COLUMN claimed_by;
ALTER TABLE requests DROP COLUMN claim_since;
ALTER TABLE requests DROP COLUMN claim_until;
