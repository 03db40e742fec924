"""Non-regression against the last accepted release, stored as a syrupy snapshot.

The accepted adapter's per-sample scores live in `baselines/<test file>/<test>.json`, written by
syrupy when a release engineer runs `pytest evals --snapshot-update` (the one way to accept a
baseline, reviewed in the pull request like any snapshot). Later runs compare with it
statistically, not for equality: scores move a little with every retrain, and a gate that fails
on any change would be updated blindly. The comparison fails only when the adapter is
significantly worse than the baseline by more than a margin (paired bootstrap, Holm over the
metrics). The syrupy extension keeps syrupy's workflow: --snapshot-update, the unused-snapshot
report, and its failure output, which here is the evidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from syrupy.extensions.json import JSONSnapshotExtension

from tunegate.errors import BaselineError
from tunegate.scores import METRIC_LABELS, mode_metric_values
from tunegate.stats import Comparison, format_p, holm_adjust, paired_bootstrap_many

SCHEMA_VERSION = 1
_DIGITS = 6  # stored precision: stable text across runs, far below any meaningful score change
_SHOWN_IDS = 5


def baseline_payload(table: pd.DataFrame, metrics: Sequence[str], accepted: Mapping[str, Any], mode: str = "finetuned") -> dict[str, Any]:
    """What a baseline stores: per-sample scores of `mode` for `metrics`, and what produced them.

    `accepted` names the release (adapter and eval set hashes, base model); it is provenance for
    the reviewer and plays no part in the comparison.
    """
    scores = {
        metric: {str(sample_id): round(float(value), _DIGITS) for sample_id, value in mode_metric_values(table, mode, metric).items()}
        for metric in metrics
    }
    return {"schema_version": SCHEMA_VERSION, "mode": mode, "accepted": dict(accepted), "scores": scores}


@dataclass(frozen=True, slots=True)
class MetricRegression:
    """One metric of the current run against the baseline; comparison a = baseline, b = current."""

    metric: str
    comparison: Comparison
    p_adjusted: float
    alpha: float

    @property
    def regressed(self) -> bool:
        return self.p_adjusted < self.alpha

    def line(self) -> str:
        c = self.comparison
        label = METRIC_LABELS.get(self.metric, self.metric)
        # Shown as current − baseline (negative: worse), the direction a reader expects.
        change = f"change {0.0 - c.diff:+.3f} [{c.confidence:.0%} CI {0.0 - c.ci_high:+.3f}, {0.0 - c.ci_low:+.3f}]"
        verdict = "REGRESSED" if self.regressed else "ok"
        return (
            f"{label}: {c.mean_b:.3f} now vs {c.mean_a:.3f} accepted, {change}, margin {c.margin:.3f}, "
            f"p(worse by more than the margin)={format_p(c.p_value)}, Holm {format_p(self.p_adjusted)}: {verdict}"
        )


@dataclass(frozen=True, slots=True)
class BaselineCheck:
    """The verdict of one run against the accepted baseline, with everything a reviewer needs."""

    metrics: tuple[MetricRegression, ...]
    compared: int  # samples in both
    added: tuple[str, ...]  # in the run, not in the baseline: not compared
    removed: tuple[str, ...]  # in the baseline, not in the run (e.g. an --eval-limit slice)
    unbaselined_metrics: tuple[str, ...]  # scored now, absent from the baseline
    accepted: Mapping[str, Any]

    @property
    def passed(self) -> bool:
        return self.compared >= 2 and not any(m.regressed for m in self.metrics)

    def lines(self) -> list[str]:
        """The evidence, one fact per line (syrupy shows these as the assertion's diff)."""
        release = ", ".join(f"{k} {v}" for k, v in self.accepted.items()) or "unnamed release"
        if self.compared < 2:
            head = (
                f"the run shares {self.compared} samples with the accepted baseline ({release}); a paired test "
                "needs at least 2. If the eval set was replaced, accept a new baseline with --snapshot-update."
            )
        elif self.passed:
            head = f"no significant regression beyond the margin against the accepted baseline ({release})"
        else:
            worse = ", ".join(METRIC_LABELS.get(m.metric, m.metric) for m in self.metrics if m.regressed)
            head = f"significantly worse than the accepted baseline ({release}) on {worse}"
        lines = [head, f"compared on {self.compared} samples"]
        lines += [m.line() for m in self.metrics]
        if self.added:
            lines.append(f"{len(self.added)} samples are new since the baseline and were not compared: {_ids(self.added)}")
        if self.removed:
            lines.append(f"{len(self.removed)} baseline samples are not in this run: {_ids(self.removed)}")
        if self.unbaselined_metrics:
            lines.append(f"not in the baseline, so not compared: {', '.join(self.unbaselined_metrics)}")
        if not self.passed:
            lines.append("if this change is intended, accept it as the new baseline: pytest evals --snapshot-update")
        return lines

    @property
    def message(self) -> str:
        return "; ".join(self.lines())


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    return shown + (f" (+{len(ids) - _SHOWN_IDS} more)" if len(ids) > _SHOWN_IDS else "")


def compare_to_baseline(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    *,
    margins: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    iters: int = 10_000,
    seed: int = 0,
    where: str = "the baseline",
) -> BaselineCheck:
    """Paired test per metric, on the samples both share: is the run worse by more than the margin?

    For each metric, H1 is "baseline − current > margin" (paired bootstrap, one-sided); the
    metrics form one Holm family, so adding metrics does not add false alarms.

    Raises:
        BaselineError: `baseline` is not a tunegate baseline document.
    """
    current_scores = _scores_of(current, "the current run")
    baseline_scores = _scores_of(baseline, where)
    margins = margins or {}
    metrics = [m for m in current_scores if m in baseline_scores]
    unbaselined = tuple(m for m in current_scores if m not in baseline_scores)
    current_ids = set().union(*(current_scores[m] for m in metrics)) if metrics else set()
    baseline_ids = set().union(*(baseline_scores[m] for m in metrics)) if metrics else set()
    common = sorted(
        i for i in current_ids & baseline_ids if all(i in current_scores[m] and i in baseline_scores[m] for m in metrics)
    )
    regressions: tuple[MetricRegression, ...] = ()
    if metrics and len(common) >= 2:
        before = {m: [baseline_scores[m][i] for i in common] for m in metrics}
        after = {m: [current_scores[m][i] for i in common] for m in metrics}
        by_metric = paired_bootstrap_many(
            before, after, iters=iters, seed=seed, alpha=alpha, margins={m: margins.get(m, 0.0) for m in metrics}
        )
        adjusted = holm_adjust([by_metric[m].p_value for m in metrics])
        regressions = tuple(MetricRegression(m, by_metric[m], float(p), alpha) for m, p in zip(metrics, adjusted))
    accepted = baseline.get("accepted", {})
    return BaselineCheck(
        metrics=regressions,
        compared=len(common),
        added=tuple(sorted(current_ids - baseline_ids)),
        removed=tuple(sorted(baseline_ids - current_ids)),
        unbaselined_metrics=unbaselined,
        accepted=dict(accepted) if isinstance(accepted, Mapping) else {},
    )


def _scores_of(document: Mapping[str, Any], where: str) -> dict[str, dict[str, float]]:
    """The `scores` table of a baseline document, checked value by value."""
    fix = "restore it from git, or accept the current scores with pytest evals --snapshot-update"
    if not isinstance(document, Mapping) or document.get("schema_version") != SCHEMA_VERSION:
        found = document.get("schema_version") if isinstance(document, Mapping) else type(document).__name__
        raise BaselineError(f"{where}: not a tunegate baseline (schema_version {found!r}, expected {SCHEMA_VERSION}); {fix}.")
    scores = document.get("scores")
    if not isinstance(scores, Mapping):
        raise BaselineError(f"{where}: field 'scores' must map metric -> {{sample id: score}}; {fix}.")
    checked: dict[str, dict[str, float]] = {}
    for metric, per_sample in scores.items():
        if not isinstance(per_sample, Mapping):
            raise BaselineError(f"{where}: scores.{metric} must map sample id -> score; {fix}.")
        for sample_id, value in per_sample.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise BaselineError(f"{where}: scores.{metric}.{sample_id} is {value!r}, not a number; {fix}.")
        checked[str(metric)] = {str(k): float(v) for k, v in per_sample.items()}
    return checked


def _parse(text: Any, where: str) -> dict[str, Any]:
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as error:
        raise BaselineError(
            f"{where}: not valid JSON ({error}); restore it from git, or accept the current scores with "
            "pytest evals --snapshot-update."
        ) from None


def baseline_extension(
    directory: Path,
    *,
    update: bool,
    margins: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    iters: int = 10_000,
    seed: int = 0,
) -> type[JSONSnapshotExtension]:
    """A syrupy extension class storing baselines under `directory`, compared statistically.

    With `update` (pytest --snapshot-update) it matches only an identical document, so syrupy
    rewrites any baseline whose scores changed: accepting is explicit and always takes effect.
    Otherwise `matches` is the non-regression test. Each check is kept on the class
    (`checks`), for the report.
    """

    class TunegateBaseline(JSONSnapshotExtension):
        checks: list[BaselineCheck] = []
        accepted_scores: list[dict[str, dict[str, float]]] = []  # the baseline's per-sample scores, for the report

        @classmethod
        def dirname(cls, *, test_location: Any) -> str:
            return str(Path(directory) / test_location.basename)

        def serialize(self, data: Any, **_: Any) -> str:
            return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

        def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
            if update:
                return bool(serialized_data == snapshot_data)
            check = self._check(serialized_data, snapshot_data)
            self.checks.append(check)
            return check.passed

        def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
            if not snapshot_data:
                yield (
                    f"no accepted baseline in {directory}: run `pytest evals --snapshot-update` to accept this "
                    "adapter's scores as the baseline, then commit the file"
                )
                return
            yield from self._check(serialized_data, snapshot_data).lines()

        def _check(self, serialized_data: Any, snapshot_data: Any) -> BaselineCheck:
            where = f"the baseline in {directory}"
            accepted = _parse(snapshot_data, where)
            check = compare_to_baseline(
                _parse(serialized_data, "the current run"),
                accepted,
                margins=margins,
                alpha=alpha,
                iters=iters,
                seed=seed,
                where=where,
            )
            self.accepted_scores.append(_scores_of(accepted, where))
            return check

    return TunegateBaseline
