"""``nox -s up``: the stack, the operation server and N workers, running until Ctrl-C; prints every URL."""

from __future__ import annotations

import argparse
import socket
import sys

from harness.drivers.system_under_test import TRANSPORTS, SystemUnderTest
from harness.stack import choose_provider
from harness.stack.choice import CHOICES
from harness.stack.process import run_until_stopped, stop_on_sigterm


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.programs.up", description=__doc__)
    ap.add_argument(
        "--stack",
        default=None,
        choices=CHOICES,
        help="where the backing services run (default auto; env VERISIM_STACK)",
    )
    ap.add_argument("--port", type=int, default=8000, help="API port (default 8000; a free one if taken)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--concurrency", type=int, default=4, help="jobs per worker at once (default 4)")
    ap.add_argument(
        "--transport",
        default=None,
        choices=sorted(TRANSPORTS),
        help="the queue jobs travel on: sqs, celery (with Flower on 5555), or seeds (the original designs: "
        "scores on SQS, inference on Celery); default VERISIM_TRANSPORT or sqs",
    )
    return ap


def _banner(stack, sut: SystemUnderTest, api: str) -> None:
    """Flower where jobs travel on Celery; then every URL, what to try, and the environment to run more workers by
    hand."""
    carried = ", ".join(f"{k.split('_')[0].lower()} jobs on {v}" for k, v in TRANSPORTS[sut.transport].items())
    flower = ""
    if "celery" in sut.worker_transports():
        url = sut.start_flower(5555 if port_free(5555) else None)
        flower = f"\n  Flower          {url}   (workers {url}/api/workers, tasks {url}/tasks)"
    if stack.prometheus:  # it scrapes the API and workers and evaluates deploy/prometheus/verisim-rules.yml
        prom = stack.prometheus.url
        flower += f"\n  Prometheus      {prom}   (slo.toml's alerts {prom}/alerts, scraped {prom}/targets)"
    print(
        f"""
Verisim is up.
  dashboard       {api}/
  API             {api}   (docs {api}/docs, health {api}/healthz, ready {api}/readyz, metrics {api}/metrics)
  dashboard API   {api}/api/v1/dashboard/live-stats   WebSocket {api.replace("http", "ws")}/api/v1/dashboard/ws
  mock OpenAI     {stack.openai.base_url}   (knobs: PATCH {stack.openai.admin_url}/config){flower}
  transports      {carried}
  logs            {sut.workdir / "logs"}  and  {stack.logs.get("postgres", "").rsplit("/", 1)[0]}

Try:
  curl -s -X POST {api}/api/v1/inference -H 'content-type: application/json' \\
   -d '{{"pattern": "linear", "values": [1, 2, 3, 4, 5]}}'
  curl -s {api}/api/v1/jobs/<job_id>
  python data_simulator.py --url {api} --interval 1
  python simulate_load.py --url {api} --requests 20 --concurrency 5
  locust -f locustfile.py --host {api} --users 20

The system's environment, to run more workers by hand (python -m system.worker; Celery: python -m
system.worker --transport celery):""",
        flush=True,
    )
    for k, v in sut.env.items():
        if k in stack.to_env() or k.startswith(("SQS_", "INFERENCE_", "SCORE_", "CELERY_")):
            print(f"  export {k}={v}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = stop_on_sigterm()
    provider = choose_provider(args.stack, progress=lambda m: print(m, flush=True))
    sut = None
    try:
        stack = provider.start()
        sut = SystemUnderTest(stack, progress=lambda m: print(m, flush=True), transport=args.transport)
        port = args.port if port_free(args.port) else None
        api = sut.start_api(port)
        for transport in sut.worker_transports():
            for _ in range(args.workers):
                sut.start_worker(concurrency=args.concurrency, transport=transport)
        _banner(stack, sut, api)
        run_until_stopped(stop)
    except KeyboardInterrupt:  # during start-up
        pass
    finally:
        print("\nstopping …", flush=True)
        if sut:
            sut.stop()
        provider.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
