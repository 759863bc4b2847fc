-- What each deployment last saw of its queue: the SQS queue's CreatedTimestamp. An emulator restarted without
-- persistence comes back with its queues recreated (a new timestamp) and every waiting message gone; the first
-- worker to notice flips this row and, in the same transaction, flags the deployment's queued jobs for re-sending
-- (the SQS outbox, send_pending), so the jobs the restart dropped run within seconds instead of after the
-- stale-job period.
CREATE TABLE IF NOT EXISTS queue_epochs (
    queue      text PRIMARY KEY,
    created    text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- The publishers restore the Kafka log after a broker lost it (see system/storage/outbox.py): they look up the
-- events of one deployment's jobs that are marked published.
CREATE INDEX IF NOT EXISTS outbox_job_id ON outbox (job_id);

-- An event may reach the broker without its row being marked published (the answer timed out; Postgres was lost
-- before the mark committed; the publisher died). A claim marks rows uncertain until the mark; before an uncertain
-- row is sent again the publisher looks for it in the log, so an ambiguous publish never becomes a duplicate event.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS uncertain boolean NOT NULL DEFAULT false;
