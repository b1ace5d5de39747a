-- Claims live in a table of their own: a claim, a renewal or a release writes a small row, not
-- a new version of the request's row with its body.
CREATE TABLE IF NOT EXISTS request_claims (
    request_id  TEXT PRIMARY KEY NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    claimed_by  TEXT NOT NULL,
    claim_since BIGINT NOT NULL,
    claim_until BIGINT NOT NULL
);
INSERT INTO request_claims (request_id, claimed_by, claim_since, claim_until)
    SELECT id, claimed_by, claim_since, claim_until FROM requests WHERE claimed_by IS NOT NULL
    ON CONFLICT (request_id) DO NOTHING;
ALTER TABLE requests DROP COLUMN IF EXISTS claimed_by;
ALTER TABLE requests DROP COLUMN IF EXISTS claim_since;
ALTER TABLE requests DROP COLUMN IF EXISTS claim_until;
