"""The worker process: ``python -m system.worker --transport sqs|celery --processes N``; the job processing every
transport shares is ``system.worker.processor``."""
