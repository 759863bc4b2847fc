"""The SQS worker: ``python -m system.worker --processes N``."""
