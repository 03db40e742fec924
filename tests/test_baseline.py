"""Tests for tunegate.baseline: the stored document, the statistical comparison, and the syrupy
workflow around it (accept with --snapshot-update, compare otherwise, unused-snapshot report),
run in inner pytest sessions with the real syrupy plugin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tunegate.baseline import SCHEMA_VERSION, BaselineCheck, baseline_payload, compare_to_baseline
from tunegate.errors import BaselineError

pytest_plugins = ["pytester"]

IDS = [f"q{i:02d}" for i in range(40)]
ACCEPTED = {"adapter_sha256": "0123456789abcdef", "eval_set_sha256": "fedcba9876543210"}


def document(values: dict[str, np.ndarray], ids: list[str] = IDS) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": "finetuned",
        "accepted": ACCEPTED,
        "scores": {metric: {i: round(float(v), 6) for i, v in zip(ids, vector)} for metric, vector in values.items()},
    }


def accepted_scores(seed: int = 0, n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"rougeL": rng.uniform(0.2, 0.6, n), "bertscore": rng.uniform(0.5, 0.8, n)}


def shifted(values: dict[str, np.ndarray], by: float, noise: float = 0.02, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: np.clip(v + by + rng.normal(0, noise, v.size), 0, 1) for m, v in values.items()}


# --- the document ----------------------------------------------------------------------------


def test_payload_holds_per_sample_scores_of_the_gated_metrics_only() -> None:
    table = pd.DataFrame(
        [("b", "finetuned", "rougeL", 0.123456789), ("a", "finetuned", "rougeL", 0.5),
         ("a", "base", "rougeL", 0.9), ("a", "finetuned", "rouge1", 0.7)],
        columns=["sample_id", "mode", "metric", "value"],
    )
    payload = baseline_payload(table, ["rougeL"], ACCEPTED)
    assert payload == {
        "schema_version": SCHEMA_VERSION,
        "mode": "finetuned",
        "accepted": ACCEPTED,
        "scores": {"rougeL": {"a": 0.5, "b": 0.123457}},
    }


# --- compare_to_baseline ---------------------------------------------------------------------


def test_the_same_scores_pass() -> None:
    check = compare_to_baseline(document(accepted_scores()), document(accepted_scores()), iters=2000)
    assert check.passed and check.compared == 40
    assert [m.comparison.diff for m in check.metrics] == [0.0, 0.0]
    assert check.lines()[0].startswith("no significant regression beyond the margin against the accepted baseline")


def test_a_clear_drop_fails_with_per_metric_evidence() -> None:
    before = accepted_scores()
    check = compare_to_baseline(document(shifted(before, -0.08)), document(before), iters=2000)
    assert not check.passed
    assert all(m.regressed for m in check.metrics)
    head, compared, *metric_lines = check.lines()[:4]
    assert head.startswith("significantly worse than the accepted baseline (adapter_sha256 0123456789abcdef")
    assert compared == "compared on 40 samples"
    assert metric_lines[0].startswith("ROUGE-L: 0.3") and "change -0.08" in metric_lines[0]
    assert metric_lines[0].endswith("REGRESSED")
    assert check.lines()[-1] == "if this change is intended, accept it as the new baseline: pytest evals --snapshot-update"


def test_a_drop_within_the_margin_passes_and_beyond_it_fails() -> None:
    before = accepted_scores()
    after = document(shifted(before, -0.03, noise=0.01))
    lenient = compare_to_baseline(after, document(before), margins={"rougeL": 0.05, "bertscore": 0.05}, iters=2000)
    strict = compare_to_baseline(after, document(before), margins={"rougeL": 0.0, "bertscore": 0.0}, iters=2000)
    assert lenient.passed and not strict.passed
    assert "margin 0.050" in lenient.lines()[2]


def test_an_improvement_passes() -> None:
    before = accepted_scores()
    assert compare_to_baseline(document(shifted(before, +0.1)), document(before), iters=2000).passed


def test_metrics_form_one_holm_family() -> None:
    before = accepted_scores()
    check = compare_to_baseline(document(shifted(before, -0.01, noise=0.03)), document(before), iters=2000)
    raw = sorted(m.comparison.p_value for m in check.metrics)
    adjusted = sorted(m.p_adjusted for m in check.metrics)
    assert adjusted[0] == pytest.approx(min(1.0, 2 * raw[0]))


def test_added_and_removed_samples_are_reported_not_crashed_on() -> None:
    before = accepted_scores()
    now = {m: v[5:] for m, v in before.items()}
    now_ids = IDS[5:]
    now = {m: np.concatenate([v, [0.9, 0.9]]) for m, v in now.items()}
    check = compare_to_baseline(document(now, now_ids + ["new_a", "new_b"]), document(before), iters=2000)
    assert check.passed and check.compared == 35
    assert check.added == ("new_a", "new_b") and check.removed == tuple(IDS[:5])
    lines = check.lines()
    assert "2 samples are new since the baseline and were not compared: new_a, new_b" in lines
    assert "5 baseline samples are not in this run: q00, q01, q02, q03, q04" in lines


def test_a_replaced_eval_set_fails_with_the_way_out() -> None:
    check = compare_to_baseline(document(accepted_scores(), [f"x{i}" for i in range(40)]), document(accepted_scores()))
    assert not check.passed and check.compared == 0
    assert "accept a new baseline with --snapshot-update" in check.lines()[0]


def test_a_metric_new_since_the_baseline_is_named_not_compared() -> None:
    before = accepted_scores()
    check = compare_to_baseline(document({**before, "judge": before["rougeL"]}), document(before), iters=500)
    assert check.passed and check.unbaselined_metrics == ("judge",)
    assert "not in the baseline, so not compared: judge" in check.lines()


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({"scores": {}}, "schema_version None"),
        ({"schema_version": SCHEMA_VERSION, "scores": [1, 2]}, "field 'scores' must map"),
        ({"schema_version": SCHEMA_VERSION, "scores": {"rougeL": {"q1": "high"}}}, "scores.rougeL.q1 is 'high'"),
        ({"schema_version": SCHEMA_VERSION, "scores": {"rougeL": {"q1": float("nan")}}}, "scores.rougeL.q1 is nan"),
    ],
)
def test_a_broken_baseline_is_a_clear_error(broken: dict, expected: str) -> None:
    with pytest.raises(BaselineError, match="restore it from git, or accept the current scores") as error:
        compare_to_baseline(document(accepted_scores()), broken, where="baselines/x.json")
    assert expected in str(error.value) and str(error.value).startswith("baselines/x.json: ")


def test_check_is_frozen() -> None:
    check = compare_to_baseline(document(accepted_scores()), document(accepted_scores()), iters=200)
    assert isinstance(check, BaselineCheck)
    with pytest.raises(AttributeError):
        check.compared = 3  # type: ignore[misc]


# --- the syrupy workflow, in inner pytest sessions -------------------------------------------

INNER_TEST = """
import json
from pathlib import Path

import pytest

from tunegate.baseline import baseline_extension


@pytest.fixture
def baseline(snapshot, request):
    update = request.config.getoption("update_snapshots")
    extension = baseline_extension(Path("baselines").resolve(), update=update, margins={"rougeL": 0.02, "bertscore": 0.02}, iters=2000)
    return snapshot.use_extension(extension)


def test_no_regression(baseline):
    assert json.loads(Path("scores.json").read_text()) == baseline
"""
SNAPSHOT = Path("baselines/test_inner_baseline/test_no_regression.json")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    pytester.makepyfile(test_inner_baseline=INNER_TEST)
    return pytester


def write_scores(project: pytest.Pytester, values: dict[str, np.ndarray]) -> None:
    (project.path / "scores.json").write_text(json.dumps(document(values)), encoding="utf-8")


def test_without_a_baseline_the_failure_says_how_to_accept_one(project: pytest.Pytester) -> None:
    write_scores(project, accepted_scores())
    result = project.runpytest("-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no accepted baseline in *baselines: run `pytest evals --snapshot-update`*"])


def test_accept_then_compare_statistically(project: pytest.Pytester) -> None:
    before = accepted_scores()
    write_scores(project, before)
    accepted = project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update")
    assert accepted.ret == pytest.ExitCode.OK
    stored = json.loads((project.path / SNAPSHOT).read_text(encoding="utf-8"))
    assert stored == document(before)

    assert project.runpytest("-q", "-p", "no:cacheprovider").ret == pytest.ExitCode.OK

    # A little worse on every sample but within the margin: passes, and the baseline stays as accepted.
    write_scores(project, shifted(before, -0.005, noise=0.002))
    assert project.runpytest("-q", "-p", "no:cacheprovider").ret == pytest.ExitCode.OK
    assert json.loads((project.path / SNAPSHOT).read_text(encoding="utf-8")) == stored

    # Clearly worse: fails with the evidence as syrupy's diff.
    write_scores(project, shifted(before, -0.1))
    worse = project.runpytest("-q", "-p", "no:cacheprovider")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.stdout.fnmatch_lines([
        "*significantly worse than the accepted baseline (adapter_sha256 0123456789abcdef*",
        "*compared on 40 samples*",
        "*REGRESSED*",
        "*accept it as the new baseline: pytest evals --snapshot-update*",
    ])


def test_snapshot_update_accepts_even_a_statistically_equal_run(project: pytest.Pytester) -> None:
    """Accepting is explicit and always takes effect, even when the comparison would pass."""
    before = accepted_scores()
    write_scores(project, before)
    project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update")
    nudged = shifted(before, -0.001, noise=0.001)
    write_scores(project, nudged)
    assert project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update").ret == pytest.ExitCode.OK
    assert json.loads((project.path / SNAPSHOT).read_text(encoding="utf-8")) == document(nudged)


def test_syrupy_reports_and_deletes_unused_baselines(project: pytest.Pytester) -> None:
    write_scores(project, accepted_scores())
    project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update")
    stale = project.path / "baselines" / "test_inner_baseline" / "test_renamed_long_ago.json"
    stale.write_text(json.dumps(document(accepted_scores())), encoding="utf-8")
    result = project.runpytest("-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
    project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update")
    assert not stale.exists() and (project.path / SNAPSHOT).exists()


def test_a_hand_broken_baseline_fails_with_a_clear_message(project: pytest.Pytester) -> None:
    write_scores(project, accepted_scores())
    project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update")
    (project.path / SNAPSHOT).write_text('{"schema_version": 1, "scores": ', encoding="utf-8")
    result = project.runpytest("-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*BaselineError: the baseline in *baselines: not valid JSON*restore it from git*"])


def test_a_deselected_gate_leaves_its_baseline_alone(project: pytest.Pytester) -> None:
    """`pytest evals -m 'not finetuned' --snapshot-update` must not delete the accepted baseline."""
    write_scores(project, accepted_scores())
    project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update")
    project.makepyfile(test_inner_other="def test_other():\n    pass\n")
    result = project.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update", "-k", "other")
    assert result.ret == pytest.ExitCode.OK
    assert (project.path / SNAPSHOT).exists()
