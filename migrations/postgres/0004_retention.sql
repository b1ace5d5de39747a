-- Finished requests that hold nothing, oldest first: what retention deletes.
CREATE INDEX IF NOT EXISTS requests_finished ON requests (updated_at) WHERE NOT needs_work AND capacity_held = 0;
-- Requests that hold machines, newest first: what getReturnRequests reads when it names none.
CREATE INDEX IF NOT EXISTS requests_holding ON requests (created_at DESC, id DESC) WHERE capacity_held > 0;
