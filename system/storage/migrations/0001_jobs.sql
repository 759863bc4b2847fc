-- Jobs: the system of record for every accepted job, whatever its kind.
CREATE TABLE IF NOT EXISTS jobs (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('score', 'inference')),
    status        text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'completed_with_warnings', 'failed')),
    params        jsonb NOT NULL DEFAULT '{}'::jsonb,
    input_key     text,
    result        jsonb,
    error_code    text,
    error_message text,
    attempts      integer NOT NULL DEFAULT 0,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_enqueued_at ON jobs (enqueued_at DESC);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs (finished_at DESC) WHERE finished_at IS NOT NULL;

-- One row per job and stage: when it started, when it finished, how long it took.
CREATE TABLE IF NOT EXISTS job_stages (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage       text NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    duration_ms double precision,
    status      text NOT NULL,
    detail      jsonb,
    PRIMARY KEY (job_id, stage, attempt)
);

-- One row per inference job and model.
CREATE TABLE IF NOT EXISTS inference_results (
    job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    model_name   text NOT NULL,
    pattern      text NOT NULL,
    prediction   jsonb NOT NULL,
    inference_ms double precision NOT NULL,
    mae          double precision,
    rmse         double precision,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, model_name)
);
CREATE INDEX IF NOT EXISTS inference_results_created_at ON inference_results (created_at DESC);

-- Transactional outbox: Kafka events are written with the state change, published after commit.
CREATE TABLE IF NOT EXISTS outbox (
    id           bigserial PRIMARY KEY,
    job_id       uuid NOT NULL,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,  -- a publisher is on it until then (a dead publisher's claim expires)
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
