-- Generation charges: one ledger entry per written batch, account, key and UTC day, no longer
-- one per generation (half of what a record cost the database to write). Each record names
-- the entry that charged it; the entry's amount is the sum of its records' costs. Earlier
-- entries keep their generation_id.
ALTER TABLE ledger ADD COLUMN charge_batch TEXT;
CREATE UNIQUE INDEX ledger_charge_batch ON ledger(charge_batch);
ALTER TABLE generations ADD COLUMN charge_batch TEXT;
