"""``python -m system.api [--host H] [--port P]`` — the operation server; settings from the environment / .env."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m system.api", description="Verisim operation server (FastAPI).")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    args = ap.parse_args(argv)

    import uvicorn

    from system.config import get_settings
    from system.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level)
    uvicorn.run(
        "system.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        log_config=None,
        # idle keep-alive connections stay open longer than clients and load balancers keep theirs (60 s is
        # the usual idle timeout): with uvicorn's 5 s, a client that reused a connection the server was just
        # closing lost its POST with no answer (seen in the chaos-under-load runs)
        timeout_keep_alive=65,
    )


if __name__ == "__main__":
    main()
