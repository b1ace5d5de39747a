-- Prefix listings of shared state read one range of keys compared byte by byte, whatever the
-- database's collation.
CREATE INDEX IF NOT EXISTS shared_state_key_bytes ON shared_state ((key COLLATE "C"));
