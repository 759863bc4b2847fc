"""Where the system keeps things: Postgres (record), Redis (live status), Kafka (events), S3 + SQS (artifacts, queue)."""
