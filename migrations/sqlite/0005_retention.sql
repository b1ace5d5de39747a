-- Finished requests that hold nothing, oldest first: what retention deletes.
CREATE INDEX IF NOT EXISTS requests_finished ON requests (updated_at) WHERE needs_work = 0 AND capacity_held = 0;
-- The audit trail and claim history of a request are deleted with it.
CREATE INDEX IF NOT EXISTS claim_history_request_only ON claim_history (request_id);
-- Requests that hold machines, newest first: what getReturnRequests reads when it names none.
CREATE INDEX IF NOT EXISTS requests_holding ON requests (created_at DESC, id DESC) WHERE capacity_held > 0;
