"""API fuzzing: thousands of generated requests against the real operation server (on the session's stack, a queue
of this module's own) and the mock OpenAI service's admin API (an instance of this module's own).

Two generators, both Hypothesis:

* **schema-driven** (Schemathesis, built on Hypothesis): every operation of the server's OpenAPI document, with
  requests that fit the schema and requests that break it (wrong types, nulls, missing and extra fields, out-of-range
  numbers); each answer is checked against the document (status code documented, body matches its schema);
* **hostile bodies** (Hypothesis directly): what a schema does not describe — NaN/Infinity and out-of-range number
  tokens, deep nesting, long and odd unicode strings, truncated JSON, wrong content types, multipart with path-laden
  file names and arbitrary bytes.

Every answer: never a 5xx, never a hang (10 s), a refusal is a 4xx the route documents with a ``detail`` message.
Afterwards the API is still ready and the ledger over every accepted job is clean. ``VERISIM_FUZZ_REQUESTS`` sets
the total (CI: 2 000; ``nox -s fuzz``: 20 000); per-endpoint counts are written to ``reports/fuzz/counts.json``.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.drivers import http
from harness.oracles import ledger
from harness.oracles.fuzz import Tally
from harness.reports.report import reports_path
from harness.settings import current
from system.patterns import PATTERNS

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

TOTAL = current().fuzz_requests or 2000
SYSTEM_ENV = {"MAX_UPLOAD_BYTES": "1000000", "MAX_JSON_BYTES": "2000000", "SQS_VISIBILITY_TIMEOUT": "20"}


TALLY = Tally()  # every request of this module


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory):
    from harness.drivers.system_under_test import running_system

    with running_system(stack, tmp_path_factory.mktemp("fuzz-system"), SYSTEM_ENV, workers=1) as sut:
        # a connection per request: one request's answer never depends on what an earlier one did to the connection
        with http.client(base_url=sut.api_url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            yield sut, client


def send(client: httpx.Client, method: str, path: str, **kw) -> httpx.Response | None:
    try:
        return client.request(method, path, **kw)
    except httpx.TransportError:  # a hang (10 s) or a connection the server dropped: no answer
        return None


def documented(schema: dict, path: str, method: str) -> set[int]:
    responses = schema["paths"][path][method.lower()]["responses"]
    return {int(c) for c in responses if c.isdigit()}


# -- schema-driven (Schemathesis) ---------------------------------------------------------------------------------
def fuzz_schema(openapi: dict, base_url: str, per_operation: int, label: str = "", only=None) -> list[str]:
    """Every operation of ``openapi``, half with requests that fit the schema and half with requests that break it;
    each answer recorded and validated against the document by Schemathesis's checks. Returns the operations."""
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_dict(openapi)
    done = []
    for result in schema.get_all_operations():
        op = result.ok()
        name = f"{op.method.upper()} {op.path}"
        if only is not None and not only(op):
            continue
        codes = {int(c) for c in openapi["paths"][op.path][op.method.lower()]["responses"] if c.isdigit()}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(op, mode, base_url, max(1, per_operation // 2), label + name, codes)
        done.append(name)
    return done


def _fuzz_operation(op, mode, base_url: str, examples: int, endpoint: str, codes: set[int]) -> None:
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    @settings(max_examples=examples, suppress_health_check=list(HealthCheck), deadline=None)
    @given(case=op.as_strategy(generation_mode=mode))
    def one(case):
        try:
            response = case.call(base_url=base_url, timeout=10)
        except Exception as exc:  # noqa: BLE001 - a hang or a dropped connection is what we look for
            TALLY.record(endpoint, None, codes, f"{case.as_curl_command()} ({exc})")
            return
        TALLY.record(endpoint, response, codes, f"{mode.value} {case.as_curl_command()[:300]}")
        # every Schemathesis check but "schema-valid data must be accepted": a schema cannot say that a file must
        # sniff as a score, that text may not hold NUL, or how large a value may be, so a schema-valid request
        # may rightly be refused; what is required of a refusal (a documented 4xx with a message) Tally checks
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    try:
        one()
    except Exception as exc:  # an operation with nothing to break (no parameters) has no negative cases
        if "unsatisfiable" not in f"{type(exc).__name__} {exc}".lower():
            raise


def test_every_operation_of_the_api_from_its_openapi_document(api):
    sut, client = api
    openapi = client.get("/openapi.json").json()
    n_ops = sum(len(v) for v in openapi["paths"].values())
    TALLY.ran.add("api schema")
    done = fuzz_schema(openapi, sut.api_url, per_operation=max(20, int(TOTAL * 0.4) // n_ops))
    assert len(done) == n_ops and "POST /api/v1/inference" in done and "POST /api/v1/scores" in done


@pytest.fixture(scope="module")
def mock_base(tmp_path_factory):
    """A mock OpenAI service of this module's own (its knobs change as it is fuzzed: no other test may share it)."""
    from harness.stack.process import free_ports
    from harness.stack.services.mock_openai import LocalMockOpenAI

    (port,) = free_ports(1)
    mock = LocalMockOpenAI(tmp_path_factory.mktemp("fuzz-mock"), port)
    mock.spawn()
    mock.wait_ready()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        mock.stop()


def test_the_mock_openai_service_from_its_openapi_document(mock_base):
    """The mock's admin API (knobs, scripts, reset, request log) from its OpenAPI document."""
    base = mock_base
    openapi = http.get(f"{base}/openapi.json").json()
    n_ops = sum(len(v) for v in openapi["paths"].values())
    per = max(20, int(TOTAL * 0.1) // n_ops)
    TALLY.ran.add("mock schema")
    # the admin API first (it may script faults), then completions against a reset mock: a scripted 500 is the mock
    # doing its job, not a defect
    fuzz_schema(openapi, base, per, "mock ", only=lambda op: op.path.startswith("/admin") or op.method == "get")
    assert http.post(f"{base}/admin/reset").status_code < 300
    fuzz_schema(openapi, base, per, "mock ", only=lambda op: op.path == "/v1/chat/completions")


# -- hostile bodies (Hypothesis directly) ----------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**400), 10**400),
    st.floats(),
    st.text(max_size=40),
    st.just("𝄞" * 500),
    st.just("\x00\ud7ff\ufffd"),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
numbers = st.lists(st.one_of(st.floats(), st.integers(-(10**30), 10**30)), max_size=40)
series = st.fixed_dictionaries(
    {},
    optional={
        "pattern": st.one_of(st.sampled_from(PATTERNS), json_values),
        "values": st.one_of(numbers, st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40), json_values),
        "actual": st.one_of(numbers, json_values),
        "horizon": st.one_of(st.integers(-5, 120), st.integers(-(10**20), 10**20), json_values),
        "models": st.one_of(
            st.lists(st.sampled_from(["lstm", "moving_average", "linear_trend", "gpt", ""]), max_size=4), json_values
        ),
        "window": st.one_of(st.integers(-2, 1200), json_values),
        "metadata": json_values,
        "surprise": json_values,
    },
)
bodies = st.one_of(
    series,
    st.fixed_dictionaries(
        {"series": st.one_of(st.lists(series, max_size=4), json_values)}, optional={"extra": json_values}
    ),
    json_values,
    st.integers(1, 50_000).map(lambda depth: "[" * depth + "]" * depth),  # deep nesting, as text
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        None,
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data",
    ]
)


def encode(body, mangle: int) -> bytes:
    text = body if isinstance(body, str) else json.dumps(body, allow_nan=True)  # NaN/Infinity tokens on purpose
    raw = text.encode("utf-8", "surrogatepass")
    if mangle == 1:
        return raw[: len(raw) // 2]  # truncated
    if mangle == 2:
        return raw.replace(b"1", b"1e999", 1)  # a number beyond float range
    return raw


def budget(share_of_rest: float, floor: float) -> int:
    """Examples for a hostile-body test: at least ``floor`` × TOTAL, and its share of what the schema-driven tests
    left of TOTAL (they stop early on operations with little to vary), so a full run sends at least TOTAL."""
    return max(50, int(TOTAL * floor), int((TOTAL - TALLY.total) * share_of_rest) + 1)


def test_hostile_inference_bodies(api):
    sut, client = api
    codes = documented(client.get("/openapi.json").json(), "/api/v1/inference", "POST")

    TALLY.ran.add("hostile inference")

    @settings(max_examples=budget(0.6, 0.3), suppress_health_check=list(HealthCheck), deadline=None)
    @given(body=bodies, mangle=st.sampled_from([0, 0, 0, 1, 2]), content_type=content_types)
    def one(body, mangle, content_type):
        raw = encode(body, mangle)
        headers = {"content-type": content_type} if content_type else {}
        r = send(client, "POST", "/api/v1/inference", content=raw, headers=headers)
        TALLY.record("POST /api/v1/inference (hostile)", r, codes, f"{raw[:80]!r} as {content_type}")

    one()


chat_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.one_of(st.sampled_from(["gpt-4o-mini", "gpt-4o", ""]), json_values),
            "messages": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "role": st.one_of(st.sampled_from(["system", "user", "assistant", "tool"]), json_values),
                            "content": st.one_of(st.text(max_size=200), json_values),
                        },
                    ),
                    max_size=4,
                ),
                json_values,
            ),
            "temperature": st.one_of(st.floats(), json_values),
            "stream": st.one_of(st.booleans(), json_values),
            "n": st.one_of(st.integers(-5, 10**12), json_values),
            "extra": json_values,
        },
    ),
)


def test_hostile_chat_completions(mock_base):
    """What the OpenAI SDK (or anyone) may send the mock: its answer is a completion or OpenAI's 400 error object."""
    assert http.post(f"{mock_base}/admin/reset").status_code < 300
    with http.client(base_url=mock_base, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        TALLY.ran.add("hostile chat")

        @settings(max_examples=max(50, int(TOTAL * 0.05)), suppress_health_check=list(HealthCheck), deadline=None)
        @given(body=chat_bodies, mangle=st.sampled_from([0, 0, 0, 1, 2]))
        def one(body, mangle):
            raw = encode(body, mangle)
            r = send(client, "POST", "/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
            TALLY.record("mock POST /v1/chat/completions (hostile)", r, {400}, f"{raw[:80]!r}")

        one()


file_names = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "../../etc/passwd",
            "..\\..\\boot.ini",
            "/abs/path.xml",
            "a/b/c.musicxml",
            "score.musicxml\x00.exe",
            "",
            ".",
            "..",
            "CON",
            "x" * 500,
        ]
    ),
)
file_bodies = st.one_of(
    st.binary(max_size=3000),
    st.builds(
        lambda sig, rest: sig + rest,
        st.sampled_from(
            [
                b"MThd",
                b"%PDF-",
                b"\x89PNG\r\n\x1a\n",
                b"\xff\xd8\xff",
                b"PK\x03\x04",
                b"<score-partwise>",
                b"X:1\nK:C\n",
                b"**kern\n",
            ]
        ),
        st.binary(max_size=2000),
    ),
)


def test_hostile_score_uploads(api):
    sut, client = api
    codes = documented(client.get("/openapi.json").json(), "/api/v1/scores", "POST")

    TALLY.ran.add("hostile scores")

    @settings(max_examples=budget(1.0, 0.2), suppress_health_check=list(HealthCheck), deadline=None)
    @given(
        name=file_names,
        data=file_bodies,
        field=st.sampled_from(["file", "file", "upload"]),
        title=st.one_of(st.none(), st.text(max_size=400)),
        language=st.one_of(st.none(), st.text(max_size=80)),
    )
    def one(name, data, field, title, language):
        form = {k: v for k, v in (("title", title), ("target_language", language)) if v is not None}
        r = send(client, "POST", "/api/v1/scores", files={field: (name, data)}, data=form)
        TALLY.record("POST /api/v1/scores (hostile)", r, codes, f"{name!r} {data[:24]!r}")

    one()


def test_oversized_bodies_are_a_413_before_parsing(api):
    sut, client = api
    big = b"[" + b"1," * 1_100_000 + b"1]"  # 2.2 MB > MAX_JSON_BYTES (2 MB here)
    r = send(client, "POST", "/api/v1/inference", content=big, headers={"content-type": "application/json"})
    TALLY.record("POST /api/v1/inference (oversized)", r, {413}, "a 2.2 MB body with its length declared")
    assert r is not None and r.status_code == 413 and "larger than the limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted as the bytes arrive
        for _ in range(30):
            yield b" " * 100_000

    r = send(client, "POST", "/api/v1/inference", content=chunks(), headers={"content-type": "application/json"})
    TALLY.record("POST /api/v1/inference (oversized)", r, {413}, "a 3 MB chunked body")
    assert r is not None and r.status_code == 413


# -- the verdict over everything this module sent -----------------------------------------------------------------
def test_the_api_is_still_ready_and_every_accepted_job_settles(api, stack):
    sut, client = api
    TALLY.save(reports_path("fuzz", "counts.json"))
    assert client.get("/readyz").status_code == 200
    assert not TALLY.broken, "\n".join(TALLY.broken[:20])
    if len(TALLY.ran) == 5:  # every generator ran (not a -k selection)
        assert TALLY.total >= TOTAL, (
            f"only {TALLY.total} fuzzed requests were sent, want {TOTAL}: {dict(TALLY.by_endpoint)}"
        )
    assert TALLY.accepted, "no fuzzed request was accepted: the generators never made a valid job"
    # the fuzzer's journal is the accepted set; a job built to be hostile yet valid may fail, with its reason, for
    # what the content is (these reasons only: a failure for any other reason is a red verdict)
    content_reasons = (
        "invalid_series non_finite_result unknown_model unparseable_score empty_score unsupported_format "
        "unreadable_pdf omr_unavailable omr_failed omr_timeout score_too_long archive_too_large "
        "time_budget_exceeded memory_budget_exceeded"
    ).split()
    n = len(TALLY.journal.accepted_ids)
    report = ledger.settle(
        stack,
        journal=TALLY.journal,
        timeout=120,
        dlq_name=sut.dlq_name,
        failures={code: n for code in content_reasons},
    )
    assert report.ok, report.summary()
