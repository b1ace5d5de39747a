-- A request's body (JSON, 4–8 KB with its machines) is compressed by the server each time it
-- is written and decompressed each time it is read. lz4 does both in well under half of pglz's
-- time (PostgreSQL 14 and later, built with lz4). Rows already stored keep their compression
-- until they are written again. A server without lz4 keeps pglz.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE requests ALTER COLUMN body SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'request bodies keep the default compression: %', SQLERRM;
END
$$;
