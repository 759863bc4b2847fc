-- A worker's lease on the jobs it runs, for the transports that cannot renew a delivery while its job runs (Celery on
-- Redis gives an unacknowledged task back only after its whole visibility timeout, which must outlast the longest
-- job). Each such worker writes its last sign of life here every second; a job it claims carries its id. When a
-- worker's row goes stale (killed, frozen, cut off), the first other worker to see it removes the row and, in the
-- same statement, flags that worker's running jobs for re-sending (send_pending): another worker runs them within
-- seconds. Its own late finish, if it was only frozen, writes nothing (a job finishes once).
CREATE TABLE IF NOT EXISTS worker_leases (
    worker  text PRIMARY KEY,
    queue   text,
    seen_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS claimed_by text;
