-- Claims take work high (0) before normal (1) before low (2), the longest-waiting first within
-- a priority. Rows from before this migration count as normal.
ALTER TABLE requests ADD COLUMN priority_rank INTEGER NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS requests_work_order ON requests (priority_rank, updated_at) WHERE needs_work = 1;
