-- 0021_xid_catalog statement 1
CREATE TABLE IF NOT EXISTS gpufleet_shard.xid_catalog ON CLUSTER 'fleet'
(
    code UInt32,
    mnemonic String,
    description String,
    a100 Bool,
    h100 Bool,
    b100 Bool,
    gb200 Bool,
    immediate_action LowCardinality(String),
    investigatory_action String,
    driver_gate String,
    category LowCardinality(String),
    trigger String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/all', '{shard}-{replica}')
ORDER BY code
;
-- the read database
CREATE DATABASE IF NOT EXISTS gpufleet ON CLUSTER 'fleet'
;
CREATE OR REPLACE TABLE gpufleet.gpu_samples ON CLUSTER 'fleet' AS gpufleet_shard.gpu_samples ENGINE = Distributed('fleet', 'gpufleet_shard', 'gpu_samples')
;
CREATE OR REPLACE TABLE gpufleet.gpu_events ON CLUSTER 'fleet' AS gpufleet_shard.gpu_events ENGINE = Distributed('fleet', 'gpufleet_shard', 'gpu_events')
;
CREATE OR REPLACE TABLE gpufleet.ingest_intents ON CLUSTER 'fleet' AS gpufleet_shard.ingest_intents ENGINE = Distributed('fleet', 'gpufleet_shard', 'ingest_intents')
;
CREATE OR REPLACE TABLE gpufleet.ingest_folds ON CLUSTER 'fleet' AS gpufleet_shard.ingest_folds ENGINE = Distributed('fleet', 'gpufleet_shard', 'ingest_folds')
;
CREATE OR REPLACE TABLE gpufleet.ingest_gaps ON CLUSTER 'fleet' AS gpufleet_shard.ingest_gaps ENGINE = Distributed('fleet', 'gpufleet_shard', 'ingest_gaps')
;
CREATE OR REPLACE TABLE gpufleet.jobs ON CLUSTER 'fleet' AS gpufleet_shard.jobs ENGINE = Distributed('fleet', 'gpufleet_shard', 'jobs')
;
CREATE OR REPLACE TABLE gpufleet.fleet_1m ON CLUSTER 'fleet' AS gpufleet_shard.fleet_1m ENGINE = Distributed('fleet', 'gpufleet_shard', 'fleet_1m')
;
CREATE OR REPLACE TABLE gpufleet.gpu_1m ON CLUSTER 'fleet' AS gpufleet_shard.gpu_1m ENGINE = Distributed('fleet', 'gpufleet_shard', 'gpu_1m')
;
CREATE OR REPLACE TABLE gpufleet.gpu_1h ON CLUSTER 'fleet' AS gpufleet_shard.gpu_1h ENGINE = Distributed('fleet', 'gpufleet_shard', 'gpu_1h')
;
CREATE OR REPLACE TABLE gpufleet.cluster_power_1s ON CLUSTER 'fleet' AS gpufleet_shard.cluster_power_1s ENGINE = Distributed('fleet', 'gpufleet_shard', 'cluster_power_1s')
;
CREATE OR REPLACE VIEW gpufleet.xid_catalog ON CLUSTER 'fleet' AS SELECT * FROM gpufleet_shard.xid_catalog
;
CREATE OR REPLACE VIEW gpufleet.schema_migrations ON CLUSTER 'fleet' AS SELECT * FROM gpufleet_shard.schema_migrations
;
