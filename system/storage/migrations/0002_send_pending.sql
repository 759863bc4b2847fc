-- The SQS outbox: a job is accepted once its row commits. When the queue would not take its message (the emulator
-- down, a batch entry refused), the row is flagged and a worker's sweep sends it as soon as the queue answers, so
-- a 2xx always means "will run exactly once" and a refusal (no row) means "will never run".
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS send_pending boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS jobs_send_pending ON jobs (enqueued_at) WHERE send_pending;
