"""Locust load for Verisim's operation server.

    locust -f locustfile.py --users 20                       # web UI at http://localhost:8089, against nox -s up
    locust -f locustfile.py --users 20 --headless -t 60s --host http://127.0.0.1:8000

Users (weights): inference submitters (3) send 1-5 series of the simulator's patterns; dashboard readers (2) poll the
REST endpoints and read job statuses; score uploaders (1) upload a Bach chorale; feed watchers (1) keep the
dashboard's WebSocket open and time each connection until its first job event. With ``VERISIM_ARRIVAL`` set (e.g.
``constant:10``, ``ramp:5:40:60``: harness.drivers.arrivals) the submissions come as an arrival rate instead (the open
model): one ``OpenArrivals`` user sends each submission when it is due, whether or not earlier ones were answered, and
times it from when it was due; the submitting users are left out and ``--users`` counts the readers. ``--host`` defaults to
``$VERISIM_API`` or http://127.0.0.1:8000 (where ``nox -s up`` puts the API). Distributed: ``nox -s load-distributed``
(a master and 2 workers), or ``locust --master`` / ``locust --worker`` by hand.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import deque

import gevent
from gevent.pool import Pool
from locust import HttpUser, between, constant, events, task
from locust.clients import HttpSession
from locust.user.users import LOCUST_STATE_STOPPING

from harness.drivers import arrivals
from harness.oracles.journal import Journal, file_digest, series_digest
from harness.settings import current
from system.patterns import PATTERNS, split

SETTINGS = current()  # VERISIM_API, VERISIM_LOAD_SCORE, … (python -m harness.settings lists them)
DEFAULT_HOST = SETTINGS.api
RECENT_JOBS: deque[str] = deque(maxlen=500)  # job ids seen, for status reads
WS_EVENT_TIMEOUT_S = SETTINGS.ws_event_timeout_s
_SCORE: bytes | None = None
# what the API told these users (VERISIM_JOURNAL): the ledger's accepted set comes from here, not from the stores
JOURNAL = Journal(SETTINGS.journal, source="locust") if SETTINGS.journal else None
ARRIVAL = arrivals.parse(SETTINGS.arrival) if SETTINGS.arrival else None  # the open model's shape, or None


def score_bytes() -> bytes:
    global _SCORE
    if _SCORE is None:
        path = SETTINGS.load_score
        if path:
            _SCORE = open(path, "rb").read()
        else:
            from system.simulators.scores import musicxml

            _SCORE = musicxml()
    return _SCORE


def submit_job(
    client, path: str, token: str, kind: str, digests: list[str], scheduled: float | None = None, **kwargs
) -> None:
    """POST a job; anything but 202 is a failure; accepted job ids are remembered for status reads and written to
    the journal with ``digests`` (of each input, in the order sent). ``token`` tags the submission
    (``metadata.submission`` / the file's name): a refused one can be looked for later. ``scheduled`` (the open
    model): when the request was due; its latency is counted from then, not from when it was sent."""
    context = {"token": token}
    if scheduled is not None:
        context["lag_ms"] = round((time.time() - scheduled) * 1000, 2)
    with client.post(path, catch_response=True, name=f"POST {path}", context=context, **kwargs) as r:
        if scheduled is not None:  # no coordinated omission: the wait before sending is part of the latency
            r.request_meta["start_time"] = scheduled
            r.request_meta["response_time"] = (time.time() - scheduled) * 1000
        if r.status_code != 202:
            r.failure(f"HTTP {r.status_code}: {r.text[:120]}")
            if JOURNAL:
                JOURNAL.refused(kind, token, r.status_code or None)
            return
        body = r.json()
        ids = body.get("job_ids") or [body["job_id"]]
        RECENT_JOBS.extend(ids)
        if JOURNAL:
            JOURNAL.accepted(ids, kind, digests)


# opened at import, before any socket exists (a file opened among gevent's sockets can take a just-closed socket's
# descriptor number: see harness.oracles.journal.Journal.open_file)
_REQUEST_LOG = open(SETTINGS.request_log, "a", buffering=1) if SETTINGS.request_log else None  # noqa: SIM115


@events.request.add_listener
def _log_request(
    request_type,
    name,
    response_time,
    response_length,
    response=None,
    context=None,
    exception=None,
    start_time=None,
    **_,
):
    """With ``$VERISIM_REQUEST_LOG`` set, one JSON line per request (when, what, status, ms, submission token):
    what the chaos-under-load runner cuts into phases."""
    if _REQUEST_LOG is None:  # no $VERISIM_REQUEST_LOG
        return
    status = getattr(response, "status_code", None)
    _REQUEST_LOG.write(
        json.dumps(
            {
                "t": start_time or time.time() - response_time / 1000,
                "name": name,
                "type": request_type,
                "status": status,
                "ms": round(response_time, 2),
                "token": (context or {}).get("token"),
                "error": None if exception is None else str(exception)[:160],
            }
        )
        + "\n"
    )


LOAD_METRICS = None  # with $VERISIM_LOCUST_METRICS_PORT: this process's figures for Prometheus


@events.init.add_listener
def _serve_metrics(environment, **_):
    """Locust's own figures on ``$VERISIM_LOCUST_METRICS_PORT`` (harness.drivers.locust_metrics), from the process that
    makes the requests (a local run's; a distributed run's workers would each need a port of their own)."""
    global LOAD_METRICS
    from locust.runners import MasterRunner

    if SETTINGS.locust_metrics_port and not isinstance(environment.runner, MasterRunner):
        from harness.drivers.locust_metrics import LoadMetrics

        LOAD_METRICS = LoadMetrics()
        LOAD_METRICS.serve(SETTINGS.locust_metrics_port, lambda: environment.runner.user_count)


@events.request.add_listener
def _count_request(request_type, name, response_time, exception=None, **_):
    if LOAD_METRICS is not None:
        LOAD_METRICS.request(request_type, name, response_time, exception is not None)


def submit_inference(client, scheduled: float | None = None) -> None:
    """Time series in the five patterns, 1-5 per request, with held-out values so every model is scored."""
    token = f"locust-{uuid.uuid4().hex[:16]}"
    series = []
    for _ in range(random.randint(1, 5)):
        pattern = random.choice(PATTERNS)
        values, actual = split(pattern, 48, 3, seed=random.randrange(2**31))
        series.append(
            {"pattern": pattern, "values": values, "actual": actual, "horizon": 3, "metadata": {"submission": token}}
        )
    digests = [series_digest(s) for s in series]
    submit_job(client, "/api/v1/inference", token, "inference", digests, scheduled, json={"series": series})


def upload_score(client, scheduled: float | None = None) -> None:
    """One score upload (the chorale, or $VERISIM_LOAD_SCORE)."""
    token = f"locust-{uuid.uuid4().hex[:16]}"
    submit_job(
        client,
        "/api/v1/scores",
        token,
        "score",
        [file_digest(score_bytes())],
        scheduled,
        files={"file": (f"{token}.musicxml", score_bytes())},
        data={"title": "Christus, der ist mein Leben"},
    )


SUBMISSIONS = {"inference": submit_inference, "score": upload_score}


class InferenceSubmitter(HttpUser):
    """Inference submissions (``submit_inference``), one every 0.5-1.5 s after the last one's answer."""

    abstract = ARRIVAL is not None  # the open model's arrivals submit instead
    weight = 3
    wait_time = between(0.5, 1.5)
    host = DEFAULT_HOST

    @task
    def submit(self) -> None:
        submit_inference(self.client)


class ScoreUploader(HttpUser):
    """Score uploads: heavy jobs, so fewer and slower. A chorale costs its worker's child about 1-2 s of a core
    (reading, analysis, audio; twice that on a machine running at half speed), so 20 users' three uploaders, one
    upload every 4-8 s each, keep about half a core busy with scores: an SLO run judges the system at a load the
    2-core machine holds, and ``nox -s capacity`` finds where it stops holding."""

    abstract = ARRIVAL is not None
    weight = 1
    wait_time = between(4, 8)
    host = DEFAULT_HOST

    @task
    def upload(self) -> None:
        upload_score(self.client)


class OpenArrivals(HttpUser):
    """The open model (``$VERISIM_ARRIVAL``): one user that sends each submission when the shape says it is due, in
    a greenlet of its own, whatever earlier ones are still waiting for (up to ``$VERISIM_ARRIVAL_MAX_IN_FLIGHT``;
    one due beyond that is *missed*). Each submission's latency runs from when it was due. Its tally per second
    (sent, late: sent over ``arrivals.LATE_S`` after it was due, missed, answered) goes to ``$VERISIM_ARRIVAL_LOG``,
    from which the run judges whether the generator offered what it was asked."""

    abstract = ARRIVAL is None
    fixed_count = 1
    wait_time = constant(0)
    host = DEFAULT_HOST

    def on_start(self) -> None:
        self.pool = Pool(SETTINGS.arrival_max_in_flight)
        self.sessions: list[HttpSession] = []  # idle ones: a session serves one request at a time
        self.tally = arrivals.Tally(SETTINGS.arrival_log)
        mix = arrivals.parse_mix(SETTINGS.arrival_mix)
        self.kinds, self.weights = list(mix), list(mix.values())

    @task
    def arrive(self) -> None:
        assert ARRIVAL is not None
        start = time.time()
        self.tally.begin(start, ARRIVAL)
        flusher = gevent.spawn(self.tally.flush_every, 1.0)
        try:
            for offset in ARRIVAL.offsets():
                due = start + offset
                while (wait := due - time.time()) > 0 and self._state != LOCUST_STATE_STOPPING:
                    gevent.sleep(min(wait, 0.5))
                if self._state == LOCUST_STATE_STOPPING:  # Locust's time is up: no more arrivals
                    self.tally.stop(at=min(due, time.time()))  # the shape asked for none from here on
                    break
                if self.pool.full():
                    self.tally.missed(due)
                    continue
                self.tally.sent(due, time.time() - due)
                self.pool.spawn(self._submit, due, random.choices(self.kinds, self.weights)[0])
        finally:
            self.tally.stop()
            # the submissions already sent get their answers (within Locust's --stop-timeout): a request cut off
            # would leave a job the system accepted and no client was told about
            self.pool.join(timeout=arrivals.ANSWER_GRACE_S)
            flusher.kill()

    def _submit(self, due: float, kind: str) -> None:
        session = (
            self.sessions.pop() if self.sessions else HttpSession(self.host, self.environment.events.request, self)
        )
        try:
            SUBMISSIONS[kind](session, scheduled=due)
        finally:
            self.sessions.append(session)
            self.tally.answered(time.time())

    def on_stop(self) -> None:
        self.pool.kill(block=True, timeout=5)
        self.tally.close()


class DashboardReader(HttpUser):
    """Someone reading the dashboard: the REST endpoints and job statuses (the live feed: ``FeedWatcher``)."""

    weight = 2
    wait_time = between(1, 3)
    host = DEFAULT_HOST

    @task(4)
    def stats(self) -> None:
        self.client.get("/api/v1/dashboard/live-stats", name="GET /api/v1/dashboard/live-stats")
        self.client.get("/api/v1/dashboard/recent?limit=20", name="GET /api/v1/dashboard/recent")

    @task(2)
    def charts(self) -> None:
        self.client.get("/api/v1/dashboard/model-comparison", name="GET /api/v1/dashboard/model-comparison")
        self.client.get("/api/v1/dashboard/patterns", name="GET /api/v1/dashboard/patterns")
        self.client.get("/api/v1/dashboard/throughput", name="GET /api/v1/dashboard/throughput")

    @task(3)
    def job_status(self) -> None:
        if RECENT_JOBS:
            job = random.choice(RECENT_JOBS)
            with self.client.get(f"/api/v1/jobs/{job}", name="GET /api/v1/jobs/{id}", catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"HTTP {r.status_code}")


class FeedWatcher(HttpUser):
    """Someone with the dashboard open: its live feed. Each request is connect + hello + the first job event,
    timed as one 'WS' request; no event within ``WS_EVENT_TIMEOUT_S`` of the hello is a *failure* (a feed that
    greets and then stays silent is broken, however fast it greeted)."""

    weight = 1
    wait_time = between(1, 3)
    host = DEFAULT_HOST

    @task
    def websocket(self) -> None:
        # websocket-client: one blocking socket, which gevent's patched socket module makes cooperative. Not the
        # `websockets` sync client: its reader thread waits in a selector on a socket that another thread closes, and
        # under gevent a socket closed while a watcher still holds it aborts the whole Locust process (libev's
        # "I/O watcher with invalid fd found in epoll_ctl", exit -6, seen in CI chaos runs).
        import websocket

        url = self.host.replace("http", "ws", 1) + "/api/v1/dashboard/ws"
        started = time.perf_counter()
        received, exc = 0, None
        try:
            ws = websocket.create_connection(url, timeout=5)
            try:
                if json.loads(ws.recv()).get("type") != "hello":
                    raise RuntimeError("no hello from the dashboard WebSocket")
                ws.settimeout(WS_EVENT_TIMEOUT_S)
                try:
                    ws.recv()
                    received = 1
                except websocket.WebSocketTimeoutException:
                    raise TimeoutError(f"no job event within {WS_EVENT_TIMEOUT_S:g} s of the hello") from None
            finally:
                ws.close(timeout=1)
        except Exception as e:  # reported to Locust as a failed request
            exc = e
        events.request.fire(
            request_type="WS",
            name="/api/v1/dashboard/ws",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=received,
            exception=exc,
            context={},
        )
