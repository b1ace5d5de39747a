-- Requests are stored whole (body, JSON) with the columns the queries filter on.
CREATE TABLE IF NOT EXISTS requests (
    id            TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL,
    state         TEXT NOT NULL,
    template_id   TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    needs_work    INTEGER NOT NULL,
    capacity_held INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_needs_work ON requests (needs_work) WHERE needs_work = 1;
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
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);
