"""``python -m harness.stack up``: start the stack, print every endpoint, run until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import json
import sys

from harness.stack import SERVICES, choose_provider
from harness.stack.choice import CHOICES
from harness.stack.local_runtime import LocalService
from harness.stack.process import run_until_stopped, stop_on_sigterm


def command(stack: str, services: list[str], json_path: str | None = None) -> list[str]:
    """The argv that runs this CLI (``up``) for ``services`` on ``stack``, writing the endpoints to ``json_path``."""
    argv = [sys.executable, "-m", "harness.stack", "up", "--stack", stack, "--services", ",".join(services)]
    return argv + (["--json", json_path] if json_path else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack and keep it running until Ctrl-C")
    up.add_argument(
        "--stack",
        "--provider",
        dest="stack",
        choices=CHOICES,
        default=None,
        help="where the services run: auto (default; env VERISIM_STACK), local or containers, as pytest's --stack",
    )
    up.add_argument(
        "--services",
        default=",".join(SERVICES),
        help=f"comma-separated subset of: {', '.join(SERVICES)} (default: all)",
    )
    up.add_argument("--json", metavar="PATH", help="also write the endpoints (and local servers' PIDs) to PATH as JSON")
    args = parser.parse_args(argv)

    services = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(SERVICES)}")

    stop = stop_on_sigterm()
    provider = choose_provider(args.stack, progress=lambda m: print(m, flush=True))
    try:
        stack = provider.start(services)
        env = stack.to_env()
        print("\nendpoints (as the system's environment):")
        for k, v in env.items():
            print(f"  export {k}={v}")
        print(f"  mock OpenAI admin: {stack.openai.admin_url}" if stack.openai else "", flush=True)
        if stack.prometheus:
            print(f"  Prometheus: {stack.prometheus.url} (targets: files in {stack.prometheus.config_dir}/targets)")
        if args.json:
            pids = {n: s.process.pid for n, s in provider.services.items() if isinstance(s, LocalService) and s.process}
            with open(args.json, "w") as fh:
                json.dump({"stack": stack.as_dict(), "env": env, "pids": pids}, fh, indent=2)
        run_until_stopped(stop)
    except KeyboardInterrupt:  # during start-up
        pass
    finally:
        print("stopping the stack …", flush=True)
        provider.stop()
    left = provider.leftovers()
    if left:
        print(f"processes left behind: {left}", file=sys.stderr)
        return 1
    print("stopped; no process left behind", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
