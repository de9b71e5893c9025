-- migrate's ClickHouse user, for a server whose users are managed with SQL (ClickHouse Cloud, or
-- an access-management admin): the schema's owner. Apply as an administrator, before
-- `gpufleet migrate`:
--
--   clickhouse-client --multiquery --param_password='…' < deploy/clickhouse/migrate.sql
--
-- and run migrate with clickhouse://gpufleet_migrate:…@host:9000/gpufleet. users.d/gpufleet.xml is
-- the same user for a server configured by files (docker-compose.yml mounts it); clickhouse_test
-- checks the two agree and runs migrate under these grants.
--
-- What migrate runs: CREATE DATABASE IF NOT EXISTS gpufleet, CREATE TABLE and CREATE MATERIALIZED
-- VIEW, ALTER TABLE … ADD/MODIFY COLUMN, MODIFY SETTING and MODIFY TTL (retention), DROP VIEW and
-- its re-creation, TRUNCATE of xid_catalog before it reloads NVIDIA's Xid catalog (0021), and reads and
-- inserts into schema_migrations. DROP TABLE is here for a later
-- migration that replaces a table; nothing reaches another database, users, grants or table
-- functions.

CREATE USER OR REPLACE gpufleet_migrate IDENTIFIED WITH sha256_password BY {password:String};

GRANT CREATE DATABASE, CREATE TABLE, CREATE VIEW, ALTER TABLE, ALTER VIEW, DROP TABLE, DROP VIEW, TRUNCATE, SELECT, INSERT ON gpufleet.* TO gpufleet_migrate;
