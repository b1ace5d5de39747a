-- Capacity per template is summed from the index alone.
DROP INDEX IF EXISTS requests_template;
CREATE INDEX IF NOT EXISTS requests_held ON requests (template_id, capacity_held) WHERE capacity_held > 0;
