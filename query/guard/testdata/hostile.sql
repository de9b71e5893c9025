# Statements tried on every read path (query --sql, the API's /sql, the plugin's raw SQL, query.RunSQL).
# Each is "=== refuse" or "=== run" on a line of its own, then the statement up to the next "===".
# {db} is gpufleet's database, {dir} a directory holding canary.txt. After each, the tables, the
# canary and the directories must be as they were.
=== refuse
SELECT 1; CREATE TABLE {db}.pwned (a Int8) ENGINE = Memory; SELECT 1
=== refuse
SELECT 1; DROP TABLE {db}.gpu_samples
=== refuse
DROP TABLE {db}.gpu_samples
=== refuse
/* looks harmless */ ALTER TABLE {db}.gpu_samples DELETE WHERE 1
=== refuse
INSERT INTO FUNCTION file('{dir}/pwned.txt', 'CSV') SELECT 1
=== refuse
SELECT 'x' INTO OUTFILE '{dir}/victim.txt' TRUNCATE FORMAT RawBLOB
=== refuse
SELECT 'x' INTO OUTFILE '{dir}/canary.txt' APPEND FORMAT RawBLOB
=== refuse
SELECT 'x' INTO OUTFILE 'victim.txt' AND STDOUT
=== refuse
SELECT * FROM (SELECT * FROM file('{dir}/canary.txt', 'LineAsString') SETTINGS readonly = 0)
=== refuse
SELECT * FROM (SELECT * FROM url('http://127.0.0.1:1/x', 'LineAsString') SETTINGS readonly = 0)
=== refuse
SELECT file('{dir}/canary.txt')
=== refuse
select * from FILE('{dir}/canary.txt', 'LineAsString')
=== refuse
SeLeCt * FrOm FiLe('{dir}/canary.txt', 'LineAsString')
=== refuse
WITH x AS (SELECT * FROM file('{dir}/canary.txt', 'LineAsString')) SELECT * FROM x
=== refuse
SELECT 1 WHERE 1 IN (SELECT 1 FROM file('{dir}/canary.txt', 'LineAsString'))
=== refuse
SELECT number FROM numbers(3) UNION ALL SELECT length(line) FROM file('{dir}/canary.txt', 'LineAsString')
=== refuse
SELECT * FROM view(SELECT * FROM file('{dir}/canary.txt', 'LineAsString'))
=== refuse
SELECT * FROM system.users
=== refuse
SELECT query FROM system.query_log
=== refuse
SELECT * FROM system.processes
=== refuse
SELECT * FROM `system`.`named_collections`
=== refuse
SELECT * FROM "system"."settings"
=== refuse
SELECT 1 WHERE 'x' IN system.users
=== refuse
SELECT * FROM INFORMATION_SCHEMA.TABLES
=== refuse
SELECT * FROM remote('127.0.0.1', system.one)
=== refuse
SELECT * FROM s3('http://127.0.0.1:1/b/x.csv', 'CSV', 'a String')
=== refuse
SELECT * FROM executable('id', 'LineAsString', 'x String')
=== refuse
SELECT * FROM mysql('127.0.0.1:1', 'db', 't', 'u', 'p')
=== refuse
SELECT * FROM postgresql('127.0.0.1:1', 'db', 't', 'u', 'p')
=== refuse
SELECT * FROM merge('system', '.*')
=== refuse
SELECT * FROM input('a String')
=== refuse
SELECT dictGet('d', 'a', toUInt64(1))
=== refuse
SELECT joinGet('{db}.x', 'a', 1)
=== refuse
SELECT 1 SETTINGS readonly = 0
=== refuse
SELECT 1 SETTINGS max_execution_time = 0
=== refuse
SELECT sum(number) FROM numbers(10) SETTINGS max_threads = 1000
=== refuse
SELECT 1 FORMAT TSV
=== refuse
SELECT 1 /* ; */ ; DROP TABLE {db}.gpu_samples
=== refuse
-- a comment
DROP TABLE {db}.gpu_samples
=== refuse
(SELECT 1); CREATE TABLE {db}.pwned (a Int8) ENGINE = Memory
=== refuse
WITH 1 AS x INSERT INTO {db}.gpu_samples (node) SELECT 'x'
=== refuse
ＳＥＬＥＣＴ 1
=== refuse
SELECT * FROM fіle('{dir}/canary.txt', 'LineAsString')
=== refuse
EXPLAIN SELECT 1
=== refuse
SHOW TABLES
=== refuse
KILL QUERY WHERE 1
=== refuse
SYSTEM FLUSH LOGS
=== refuse
SET readonly = 0
=== refuse
OPTIMIZE TABLE {db}.gpu_samples FINAL
=== refuse
SELECT catboostEvaluate('/etc/passwd', 1)
=== refuse
SELECT getSetting('max_memory_usage')
=== refuse
SELECT 1 FROM `{db}`.`gpu_samples`.`x`
=== refuse

=== run
SELECT '\'; DROP TABLE {db}.gpu_samples; --' AS s
=== run
SELECT 'x INTO OUTFILE \'{dir}/victim.txt\'' AS s -- ; DROP TABLE {db}.gpu_samples
=== run
SELECT count() FROM {db}.gpu_samples
=== run
WITH recent AS (SELECT node FROM {db}.gpu_samples LIMIT 10) SELECT count() FROM recent
=== run
SELECT name FROM system.tables WHERE database = '{db}' AND name = 'gpu_samples'
=== run
SELECT number FROM numbers(3) WHERE number IN (SELECT number FROM system.numbers LIMIT 2)
