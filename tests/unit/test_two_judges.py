"""The two judges' comparison (harness.oracles.two_judges): each alert beside the verdict of the same name, a disagreement
red with both figures, the API's other endpoints judged together, and nothing compared that Verisim did not measure.
Prometheus' side of it runs for real in tests/load and in the slow_api twin (tests/sabotage/test_slo_sabotage.py)."""

from __future__ import annotations

from harness.oracles import slo, two_judges
from harness.oracles.two_judges import Reading


def reading(name: str, firing: bool, figure: float | None = 0.1, target: float = 0.25) -> Reading:
    return Reading(name, "Alert", firing, figure, target, "s")


def v(name: str, measured: float | None, ok: bool) -> slo.Verdict:
    return slo.Verdict(name, "<= 250", measured, ok)


SLOS = slo.load()
P95 = "api POST /api/v1/inference p95 ms"


def test_judges_that_agree_pass_and_the_verdict_says_so():
    rows = two_judges.compare(SLOS, [v(P95, 80, True)], [reading(P95, False, 0.09)])
    assert [r.agree for r in rows] == [True]
    verdict = two_judges.verdict(rows)
    assert verdict.ok and verdict.measured == 0 and "they do not" not in verdict.slo
    assert "agree" in rows[0].line() and "calm" in rows[0].line()


def test_a_planted_disagreement_turns_the_run_red_with_both_figures():
    """Verisim saw the endpoint slow (Locust's 460 ms), Prometheus did not fire: the run fails, naming the SLO and
    what each judge measured; and the other way round."""
    rows = two_judges.compare(SLOS, [v(P95, 460, False)], [reading(P95, False, 0.064)])
    verdict = two_judges.verdict(rows)
    assert not verdict.ok and verdict.measured == 1
    assert f"{P95}: Verisim FAIL 460, Prometheus calm  0.064 s (> 0.25 fires)" in verdict.slo
    assert "DISAGREE" in rows[0].line()
    fired = two_judges.verdict(two_judges.compare(SLOS, [v(P95, 80, True)], [reading(P95, True, 0.5)]))
    assert not fired.ok and "Verisim PASS 80, Prometheus FIRING  0.5 s" in fired.slo


def test_what_verisim_did_not_measure_is_shown_not_compared():
    rows = two_judges.compare(
        SLOS,
        [v("api POST /api/v1/scores p95 ms", None, False)],
        [reading("api POST /api/v1/scores p95 ms", False, None), reading("DLQ messages", False, 0)],
    )
    assert [r.agree for r in rows] == [None, None]  # no DLQ verdict at all in this run
    assert two_judges.verdict(rows).ok
    assert "n/a" in rows[0].line() and "no series" in rows[0].line()


def test_the_other_endpoints_alert_stands_beside_every_unnamed_endpoint():
    other = "api {other endpoints} p95 ms"
    verdicts = [
        v("api GET /api/v1/jobs/[id] p95 ms", 30, True),
        v("api GET /api/v1/dashboard/summary p95 ms", 300, False),
        v(P95, 80, True),  # a named endpoint: judged by its own alert
    ]
    rows = two_judges.compare(SLOS, verdicts, [reading(other, True, 0.31)])
    assert rows[0].verisim.measured == 300 and not rows[0].verisim.ok and rows[0].agree
    calm = two_judges.compare(SLOS, verdicts[:1] + verdicts[2:], [reading(other, False, 0.03)])
    assert calm[0].verisim.ok and calm[0].verisim.measured == 30 and calm[0].agree


def test_judge_appends_the_agreement_verdict_only_when_prometheus_read_the_run():
    from dataclasses import asdict

    verdicts = [v(P95, 80, True)]
    assert two_judges.judge(SLOS, verdicts, {}) == [] and len(verdicts) == 1
    rows = two_judges.judge(SLOS, verdicts, {"prometheus": [asdict(reading(P95, True, 0.5))]})
    assert len(rows) == 1 and len(verdicts) == 2 and not verdicts[-1].ok
    assert two_judges.as_dicts(rows)[0]["agree"] is False


def test_prometheus_times_are_read_to_the_nanosecond():
    assert abs(two_judges._parse_time("2026-12-03T09:10:11.123456789Z") - 1796289011.123457) < 1e-5
    assert two_judges._parse_time("0001-01-01T00:00:00Z") < 0  # a group not evaluated yet: before any reload
