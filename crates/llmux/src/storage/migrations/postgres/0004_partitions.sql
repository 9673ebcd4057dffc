-- Generation records partitioned by month of created_at (Unix ms): old months are dropped
-- whole under a retention setting, and time-bounded scans touch only their months. The
-- primary key includes the partition key, as PostgreSQL requires; ids stay unique because they
-- are random. Monthly partitions are created ahead of time by llmux; a default partition
-- catches anything outside them (and is split when its month gets a partition).
ALTER TABLE generations RENAME TO generations_unpartitioned;
ALTER INDEX generations_key_time RENAME TO generations_unpartitioned_key_time;
ALTER INDEX generations_time RENAME TO generations_unpartitioned_time;
CREATE TABLE generations (LIKE generations_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (created_at);
ALTER TABLE generations ADD PRIMARY KEY (id, created_at);
CREATE TABLE generations_default PARTITION OF generations DEFAULT;
CREATE INDEX generations_key_time ON generations (key_hash, created_at);
CREATE INDEX generations_time ON generations (created_at);
INSERT INTO generations SELECT * FROM generations_unpartitioned;
DROP TABLE generations_unpartitioned;
