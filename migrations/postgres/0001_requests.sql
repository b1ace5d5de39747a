-- Requests are stored whole (body, JSON text) with the columns the queries filter on.
CREATE TABLE IF NOT EXISTS requests (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    state         TEXT NOT NULL,
    template_id   TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    needs_work    BOOLEAN NOT NULL,
    capacity_held BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    body          TEXT NOT NULL,
    claimed_by    TEXT,
    claim_since   BIGINT NOT NULL DEFAULT 0,
    claim_until   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_claimable ON requests (updated_at) WHERE needs_work;
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS requests_template ON requests (template_id) WHERE capacity_held > 0;

-- Which provision request holds which machine, for returns by id or host name.
CREATE TABLE IF NOT EXISTS request_machines (
    request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    machine_id TEXT NOT NULL,
    name       TEXT,
    PRIMARY KEY (request_id, machine_id)
);
CREATE INDEX IF NOT EXISTS request_machines_id ON request_machines (machine_id);
CREATE INDEX IF NOT EXISTS request_machines_name ON request_machines (name);

-- The audit trail: every event of every request, in order.
CREATE TABLE IF NOT EXISTS request_events (
    request_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- Every period a worker held a request, for audit.
CREATE TABLE IF NOT EXISTS claim_history (
    request_id TEXT NOT NULL,
    worker     TEXT NOT NULL,
    held_since BIGINT NOT NULL,
    held_until BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS claim_history_request ON claim_history (request_id, held_since);

-- Leases on periodic jobs, so one worker at a time runs each.
CREATE TABLE IF NOT EXISTS leases (
    job        TEXT PRIMARY KEY,
    worker     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
