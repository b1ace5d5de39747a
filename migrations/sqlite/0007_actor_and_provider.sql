-- Who made each event happen: the caller of the command that recorded it.
ALTER TABLE request_events ADD COLUMN actor TEXT;
-- The provider a request's launches go to, so work in flight is counted per provider across
-- every process (LEAST_CONNECTIONS). Rows from before this migration fill in when next saved.
ALTER TABLE requests ADD COLUMN provider TEXT;
CREATE INDEX IF NOT EXISTS requests_provider_work ON requests (provider) WHERE needs_work = 1;
