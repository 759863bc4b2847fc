"""The system under test: operation server, worker, pipelines, storage, simulators and the mock OpenAI service."""
