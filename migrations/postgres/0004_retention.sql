-- Finished requests that hold nothing, oldest first: what retention deletes.
CREATE INDEX IF NOT EXISTS requests_finished ON requests (updated_at) WHERE NOT needs_work AND capacity_held = 0;
