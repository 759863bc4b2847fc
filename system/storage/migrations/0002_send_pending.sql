-- The SQS outbox: a job is accepted once its row commits. When the queue would not take its message (the emulator
-- down, a batch entry refused), the row is flagged and a worker's sweep sends it as soon as the queue answers, so
-- a 2xx always means "will run exactly once" and a refusal (no row) means "will never run".
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS send_pending boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS jobs_send_pending ON jobs (enqueued_at) WHERE send_pending;

-- The queue a job was accepted for. Workers sweep (pending sends, stale re-sends, unpublished events) only the jobs
-- of their own queue: two deployments that share a database never send each other's jobs to the wrong queue or
-- publish each other's events to the wrong Kafka. Rows from before this column (NULL) are anyone's, as before.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS queue text;
