-- PostgreSQL partitions generation records by month here; SQLite keeps one table (retention
-- deletes old rows instead). Nothing to change.
SELECT 1;
