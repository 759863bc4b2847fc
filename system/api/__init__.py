"""The operation server (FastAPI): ``python -m system.api``."""
