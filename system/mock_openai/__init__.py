"""A mock OpenAI-compatible service with fault knobs (delay, jitter, error rate, 429 + Retry-After), changeable at run time."""

from system.mock_openai.app import Knobs, create_app

__all__ = ["Knobs", "create_app"]
