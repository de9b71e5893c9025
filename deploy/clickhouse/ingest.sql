-- ingest's ClickHouse user, for a server whose users are managed with SQL. Apply as an
-- administrator, after `gpufleet migrate`:
--
--   clickhouse-client --multiquery --param_password='…' < deploy/clickhouse/ingest.sql
--
-- and run ingest with clickhouse://gpufleet_ingest:…@host:9000/gpufleet. users.d/gpufleet.xml is
-- the same user for a server configured by files; clickhouse_test checks the two agree and runs
-- ingest's statements under these grants.
--
-- What ingest runs: INSERTs into gpu_samples, gpu_events, ingest_gaps and ingest_intents (the
-- materialized views feed the rollups on the server's side), with --fold (the default) into
-- ingest_folds, gpu_1m and gpu_1h_fold (whose view writes gpu_1h), and SELECTs of ingest_intents, ingest_folds, recent keys (exactly-once
-- replay) and schema_migrations (its start-up check). No DDL, no ALTER … DELETE, no DROP or TRUNCATE.

CREATE USER OR REPLACE gpufleet_ingest IDENTIFIED WITH sha256_password BY {password:String};

GRANT INSERT, SELECT ON gpufleet.* TO gpufleet_ingest;
