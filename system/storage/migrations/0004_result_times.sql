-- The time-series design (001) reads each model result's timing straight from this table, as its operators' SQL does:
--   SELECT model_name, COUNT(*), AVG(EXTRACT(EPOCH FROM (completed_at - created_at))) FROM inference_results ...
-- so a result row carries both ends: created_at = when its job was created (accepted), completed_at = when the
-- result was committed. Rows from before this migration keep created_at as it was (the commit time) for both.
ALTER TABLE inference_results ADD COLUMN IF NOT EXISTS completed_at timestamptz;
UPDATE inference_results SET completed_at = created_at WHERE completed_at IS NULL;
ALTER TABLE inference_results ALTER COLUMN completed_at SET DEFAULT now();
ALTER TABLE inference_results ALTER COLUMN completed_at SET NOT NULL;
