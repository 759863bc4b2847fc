"""Job pipelines: what a worker does with a job of each kind."""
