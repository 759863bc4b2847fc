"""The suite's hands on the stack's Prometheus (``harness.stack.services.prometheus``): what it scrapes, the rules it
evaluates, and its HTTP API. Targets are files in its ``targets/`` folder (file-based discovery), rules files in its
``rules/`` folder, applied with ``POST /-/reload``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from harness.polling import wait_for
from harness.stack.endpoints import PrometheusEndpoint


class PrometheusClient:
    def __init__(self, endpoint: PrometheusEndpoint):
        self.endpoint = endpoint
        self.folder = Path(endpoint.config_dir)

    # -- what it scrapes and evaluates -------------------------------------------------------------------------------
    def scrape(self, name: str, targets: list[str], labels: dict[str, str]) -> None:
        """Scrape ``targets`` (host:port, ``/metrics``) with ``labels`` from now on, as the file ``name``."""
        path = self.folder / "targets" / f"{name}.json"
        tmp = path.with_suffix(".tmp")  # discovery reads *.json: the file appears whole
        tmp.write_text(json.dumps([{"targets": targets, "labels": labels}]))
        tmp.replace(path)

    def forget(self, name: str) -> None:
        (self.folder / "targets" / f"{name}.json").unlink(missing_ok=True)

    def load_rules(self, name: str, text: str) -> float:
        """Write the rules file ``name`` and have Prometheus reload; returns when it was asked to."""
        path = self.folder / "rules" / f"{name}.yml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return self.reload()

    def drop_rules(self, name: str) -> None:
        (self.folder / "rules" / f"{name}.yml").unlink(missing_ok=True)
        self.reload()

    def reload(self) -> float:
        asked = time.time()
        req = urllib.request.Request(f"{self.endpoint.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
        return asked

    # -- its HTTP API ------------------------------------------------------------------------------------------------
    def api(self, path: str, **params) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.endpoint.url}/api/v1/{path}?{query}", timeout=10) as r:
            doc = json.load(r)
        if doc.get("status") != "success":
            raise RuntimeError(f"Prometheus /api/v1/{path}: {doc}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict, float]]:
        """An instant query: each series' labels and value."""
        data = self.api("query", query=expr, time=at)
        return [(s["metric"], float(s["value"][1])) for s in data.get("result", [])]

    def group(self, name: str) -> dict | None:
        """A rule group as ``/api/v1/rules`` shows it: its rules, their state, its last evaluation."""
        for g in self.api("rules").get("groups", []):
            if g["name"] == name:
                return g
        return None

    def scraped_since(self, selector: str, since: float, timeout: float = 15) -> float:
        """Wait until every target ``selector`` matches has been scraped after ``since``; returns the last scrape."""

        def last() -> float:
            got = [v for _, v in self.query(f"timestamp({selector})")]
            return max(got) if got and min(got) > since else 0.0

        return wait_for(last, timeout, interval=0.2, what=f"a scrape of {selector} after {since:.1f}")
