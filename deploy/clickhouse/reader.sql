-- The read-only ClickHouse user for gpufleet's read paths: the Grafana datasource, `gpufleet api`
-- and `gpufleet query`. Apply as an administrator, after `gpufleet migrate`:
--
--   clickhouse-client --multiquery --param_password='…' < deploy/clickhouse/reader.sql
--
-- and point the readers at it: clickhouse://gpufleet_reader:…@host:9000/gpufleet (Grafana: the
-- datasource's Username and Password settings).
--
-- Three locks, any one of which stops a write:
--   1. grants: SELECT on the gpufleet database and nothing else — no INSERT, no DDL, no file, url,
--      s3 or remote sources (table functions need CREATE TEMPORARY TABLE and source grants this
--      user does not have), no system tables beyond what every user may read;
--   2. the profile: readonly = 2, fixed (reads and settings changes only; not 1, under which
--      ClickHouse refuses the EXPLAIN that checks raw SQL), with ceilings on the limits the client
--      sets (store.Limits) that it cannot raise;
--   3. gpufleet's own statement check (query/guard) on the server's parse of each raw statement.
-- Change the ceilings to suit; the client's defaults (store.DefaultLimits) are below them. The
-- overflow modes stay 'throw', so that a capped answer is an error, never a short one.
--
-- users.d/gpufleet.xml is the same user and profile for a server configured by files
-- (docker-compose.yml mounts it); clickhouse_test checks the two agree and runs the read path
-- under them. migrate.sql and ingest.sql are the writers' users.

CREATE SETTINGS PROFILE OR REPLACE gpufleet_reader SETTINGS
    readonly = 2 CONST,
    max_execution_time = 30 MAX 300,
    timeout_overflow_mode = 'throw',
    max_result_rows = 2000000 MAX 10000000,
    max_result_bytes = 268435456 MAX 1073741824,
    result_overflow_mode = 'throw',
    max_memory_usage = 4294967296 MAX 17179869184,
    max_rows_to_read = 2000000000 MAX 20000000000,
    read_overflow_mode = 'throw',
    distributed_product_mode = 'global';

CREATE USER OR REPLACE gpufleet_reader IDENTIFIED WITH sha256_password BY {password:String}
    SETTINGS PROFILE 'gpufleet_reader';

GRANT SELECT ON gpufleet.* TO gpufleet_reader;
