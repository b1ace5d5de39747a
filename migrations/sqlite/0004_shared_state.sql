-- State shared by every process on the store other than requests: circuit breakers, …
CREATE TABLE IF NOT EXISTS shared_state (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    version INTEGER NOT NULL
);
