-- Every write of a request updates each of its indexes. requests_claimable serves no query
-- since claims are taken in priority order (through requests_work_order, which holds the same
-- rows). requests_needs_work stays: SQLite's planner, without statistics, takes it for the
-- lists of unfinished requests, where the others would scan every request ever stored.
DROP INDEX IF EXISTS requests_claimable;
