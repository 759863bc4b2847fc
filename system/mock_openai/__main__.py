"""Run the mock OpenAI service: ``python -m system.mock_openai --port 8089`` (knobs from SIMULATE_* env)."""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> None:
    from system.mock_openai.app import Knobs, create_app

    parser = argparse.ArgumentParser(
        prog="python -m system.mock_openai",
        description="Mock OpenAI-compatible API with fault knobs. Knobs come from SIMULATE_* environment variables "
        "(SIMULATE_DELAY_SECONDS, SIMULATE_JITTER_SECONDS, SIMULATE_ERROR_RATE, SIMULATE_ERROR_STATUS, SIMULATE_MALFORMED_RATE, SIMULATE_DROP_RATE, "
        "SIMULATE_RATE_LIMIT_RPM, SIMULATE_RETRY_AFTER_SECONDS, SIMULATE_SEED) and change at run time with "
        "PATCH /admin/config.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port to bind (default 8089)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args(argv)

    import uvicorn

    knobs = Knobs()
    logging.basicConfig(level=args.log_level.upper())
    logging.getLogger("mock_openai").warning(
        "mock OpenAI on http://%s:%s/v1 with knobs %s", args.host, args.port, knobs.model_dump()
    )
    uvicorn.run(create_app(knobs), host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
