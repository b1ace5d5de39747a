-- Every write of a request updates each of its indexes. requests_claimable serves no query
-- since claims are taken in priority order: active requests are found through
-- requests_work_order or requests_provider_work, which hold the same rows.
DROP INDEX IF EXISTS requests_claimable;
