"""The run's results as data: `reports/results.json` for CI scripts, and `summary.md` rendered from it.

`results_document` turns the session's evidence (score table, gate verdicts, gain checks, training
curve, ablation, pairwise judge) into one JSON-ready dict: every NaN or infinity is null, floats keep
6 significant digits, and keys are written sorted, so two runs' files diff line by line.
`summary_markdown` renders the Markdown report from that same dict, so the two can never disagree.
Pure functions; only `write_results` and `write_summary` touch the disk (atomically).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from tunegate.ablation.sweep import VARIABLES, format_value
from tunegate.gates import GainCheck, GateResult
from tunegate.inference import MODES
from tunegate.report import mode_metric_cis
from tunegate.scores import METRIC_LABELS
from tunegate.stats import format_p

if TYPE_CHECKING:  # tunegate.run pulls in the whole pipeline; only its types are needed here
    from tunegate.ablation import AblationResult, CheapestCheck
    from tunegate.judge import PairwiseResult
    from tunegate.run import TrainingEvidence

SCHEMA_VERSION = 1
MEANS_CONFIDENCE = 0.95  # what `mode_metric_cis` computes
_DIGITS = 6  # significant digits kept: stable text across runs, far below any meaningful change


# --- the document --------------------------------------------------------------------------------


def results_document(
    *,
    provenance: Mapping[str, Any],
    table: pd.DataFrame,
    gates: Sequence[GateResult],
    gain_checks: Sequence[GainCheck] = (),
    training: TrainingEvidence | None = None,
    ablation: AblationResult | None = None,
    pairwise: PairwiseResult | None = None,
    timings: Mapping[str, float] | None = None,
    plots: Mapping[str, str] | None = None,
    seed: int = 0,
    cis: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Everything the run found, as a JSON-ready dict (README: "results.json").

    Args:
        provenance: what was evaluated (`GateRun.provenance()`), copied as given.
        table: the long score table (`sample_id, mode, metric, value`); a non-finite value is a
            missing score: null in `scores`, counted in its mean's `missing`, left out of the mean.
        gates: every verdict of the session, in the order they ran.
        gain_checks: finetuned against its yardsticks (`GateRun.gain_checks()`).
        training, ablation, pairwise: the evidence computed this session, or None (written as null).
        timings: wall seconds per phase, keys ending in `_s` (`{"generation_s": 12.3}`).
        plots: title -> PNG file name relative to the report directory, in display order.
        seed: the bootstrap seed of the per-mode intervals (the run's seed).
        cis: those intervals when the caller has them already, `mode_metric_cis(finite_rows(table),
            seed=seed)` (the report draws them once for its table, plots and this document).
    """
    passed = [gate.passed for gate in gates]
    metrics = list(dict.fromkeys([*table["metric"], *(check.metric for check in gain_checks)]))
    return {
        "schema_version": SCHEMA_VERSION,
        "passed": all(passed) if passed else None,
        "gate_counts": {"total": len(passed), "passed": sum(passed), "failed": len(passed) - sum(passed)},
        "gates": [{"name": g.name, "passed": bool(g.passed), "message": g.message} for g in gates],
        "provenance": _clean(dict(provenance)),
        "seed": seed,
        "metric_labels": {metric: METRIC_LABELS.get(metric, metric) for metric in metrics},
        "means": _means(table, seed, cis),
        "comparisons": [_comparison(check) for check in gain_checks],
        "training": _training(training) if training is not None else None,
        "ablation": _ablation(ablation) if ablation is not None else None,
        "pairwise": _pairwise(pairwise) if pairwise is not None else None,
        "scores": _scores(table),
        "timings_s": _clean(dict(timings or {})),
        "plots": [{"title": str(title), "file": str(file)} for title, file in (plots or {}).items()],
    }


def finite_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The score table's rows with a finite value; a NaN or inf is a missing score, counted but never averaged."""
    return table[_finite(table)]


def _finite(table: pd.DataFrame) -> np.ndarray:
    return np.isfinite(pd.to_numeric(table["value"], errors="coerce").to_numpy(dtype=float))


def _means(table: pd.DataFrame, seed: int, cis: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    finite = _finite(table)
    cis = (mode_metric_cis(table[finite], seed=seed) if cis is None else cis).set_index(["mode", "metric"])
    missing = table[~finite].groupby(["mode", "metric"], sort=False).size()
    rows = []
    for mode, metric in dict.fromkeys(zip(table["mode"], table["metric"])):
        row = {"mode": mode, "metric": metric, "mean": None, "ci_low": None, "ci_high": None, "n": 0,
               "missing": int(missing.get((mode, metric), 0)), "confidence": MEANS_CONFIDENCE}
        if (mode, metric) in cis.index:
            found = cis.loc[(mode, metric)]
            row.update(mean=_num(found["mean"]), ci_low=_num(found["ci_low"]), ci_high=_num(found["ci_high"]),
                       n=int(found["n"]))
        rows.append(row)
    return sorted(rows, key=lambda row: _mode_rank(row["mode"]))  # stable: metrics keep the table's order


def _comparison(check: GainCheck) -> dict[str, Any]:
    c = check.comparison
    return {
        "metric": check.metric, "a": "finetuned", "b": check.opponent,
        "mean_a": _num(c.mean_a), "mean_b": _num(c.mean_b), "diff": _num(c.diff),
        "ci_low": _num(c.ci_low), "ci_high": _num(c.ci_high), "confidence": _num(c.confidence),
        "p_value": _num(c.p_value), "p_adjusted": _num(check.p_adjusted), "alpha": _num(check.alpha),
        "significant": bool(check.significant), "min_gain": _num(check.min_gain), "passed": bool(check.passed),
        "n": c.n, "ties": c.ties, "iters": c.iters, "margin": _num(c.margin), "family_size": check.family_size,
    }


def _training(evidence: TrainingEvidence) -> dict[str, Any]:
    curve, divergence, verdict = evidence.curve, evidence.divergence, evidence.verdict
    steps, losses = curve.eval.arrays()
    keep = np.isfinite(losses)
    steps, losses = steps[keep], losses[keep]
    train_steps, train = curve.train.arrays()
    train_finite = train[np.isfinite(train)]
    best = int(np.argmin(losses)) if len(losses) else None
    return {
        "source": str(curve.source),
        "eval_loss_key": curve.eval_loss_key,
        "global_step": curve.global_step,
        "max_steps": curve.max_steps,
        "num_train_epochs": _num(curve.num_train_epochs),
        "finished": curve.finished,
        "evaluations": len(curve.eval),
        "non_finite_evaluations": int((~keep).sum()),
        "best": None if best is None else {"step": int(steps[best]), "eval_loss": _num(losses[best])},
        "final": None if best is None else {
            "step": int(steps[-1]), "eval_loss": _num(losses[-1]),
            "train_loss": _num(train_finite[-1]) if len(train_finite) else None,
        },
        "best_model_checkpoint": curve.best_model_checkpoint,
        "best_global_step": curve.best_global_step,
        "metric_for_best_model": curve.metric_for_best_model,
        "divergence": None if divergence is None else {
            **{f.name: _clean(getattr(divergence, f.name)) for f in fields(divergence)},
            "message": str(divergence),
        },
        "verdict": {
            "passed": bool(verdict.passed), "message": verdict.message, "shipped_step": verdict.shipped_step,
            "shipped_eval_loss": _num(verdict.shipped_eval_loss), "health": list(verdict.health),
        },
    }


def _ablation(result: AblationResult) -> dict[str, Any]:
    notes = dict.fromkeys(note for curve in result.curves for note in curve.notes)
    runs = [] if result.sweep is None else [
        {"label": run.label, "value": _num(value), "adapter_dir": str(run.adapter_dir)}
        for run, value in zip(result.sweep.runs, result.sweep.values)
    ]
    return {
        "variable": result.variable,
        "variable_label": VARIABLES.get(result.variable, result.variable),
        "source": result.source,
        "seconds": _num(result.seconds),
        "generated": result.generated,
        "confounds": list(result.confounds),
        "notes": list(notes),
        "runs": runs,
        "curves": [
            {"metric": curve.metric, "label": METRIC_LABELS.get(curve.metric, curve.metric),
             "higher_is_better": curve.higher_is_better, "best": _point(curve.best),
             "points": [_point(point) for point in curve.points]}
            for curve in result.curves
        ],
        "best_vs_smallest": [_cheapest(check) for check in result.checks],
    }


def _point(point: Any) -> dict[str, Any]:
    return {"value": _num(point.value), "mean": _num(point.mean), "ci_low": _num(point.ci_low),
            "ci_high": _num(point.ci_high), "n": point.n, "label": point.label}


def _cheapest(check: CheapestCheck) -> dict[str, Any]:
    """Best against smallest on the metric's own scale (a loss that fell: a negative diff), as str(check) says."""
    entry: dict[str, Any] = {
        "metric": check.metric, "best_value": _num(check.best.value), "best_mean": _num(check.best.mean),
        "smallest_value": _num(check.smallest.value), "smallest_mean": _num(check.smallest.mean),
        "higher_is_better": check.higher_is_better, "tested": check.comparison is not None,
        "diff": None, "ci_low": None, "ci_high": None, "p_value": None, "p_adjusted": _num(check.adjusted_p),
        "family_size": check.family_size, "significant": check.significant, "message": str(check),
        "sufficient_value": _num(check.sufficient.value) if check.sufficient else None,
        "sufficient_mean": _num(check.sufficient.mean) if check.sufficient else None,
    }
    if check.comparison is not None:
        c, sign = check.comparison, 1.0 if check.higher_is_better else -1.0
        low, high = sorted((sign * c.ci_low, sign * c.ci_high))
        entry.update(diff=_num(sign * c.diff), ci_low=_num(low), ci_high=_num(high), p_value=_num(c.p_value))
    return entry


def _pairwise(result: PairwiseResult) -> dict[str, Any]:
    net = result.net
    return {
        "candidate": result.candidate, "opponent": result.opponent,
        "wins": result.wins, "ties": result.ties, "losses": result.losses, "n": result.n,
        "net_win_rate": {"mean": _num(net.mean), "ci_low": _num(net.ci_low), "ci_high": _num(net.ci_high),
                         "confidence": _num(net.confidence)},
        "first_position_picks": result.first_position_picks, "decided_verdicts": result.decided_verdicts,
        "errors": result.errors, "outcomes": {str(k): int(v) for k, v in result.outcomes.items()},
        "summary": result.summary(),
    }


def _scores(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One flat row per score, exactly the long table's columns.

    Flat rather than {sample_id, mode, scores: {...}}: `pd.DataFrame(doc["scores"])` is the very
    frame the gates read, `jq -r '.scores[] | [.sample_id, .mode, .metric, .value] | @csv'` is a
    CSV, and a filter needs no knowledge of which metrics ran. A missing score is a null value.
    """
    rows = [
        {"sample_id": str(sample_id), "mode": mode, "metric": metric, "value": _num(value)}
        for sample_id, mode, metric, value in table[["sample_id", "mode", "metric", "value"]].itertuples(index=False)
    ]
    return sorted(rows, key=lambda row: _mode_rank(row["mode"]))


def _mode_rank(mode: str) -> tuple[int, str]:
    return (MODES.index(mode), "") if mode in MODES else (len(MODES), mode)


def _num(value: Any) -> int | float | bool | None:
    """A JSON number: ints stay ints, floats keep 6 significant digits, NaN and infinity become None."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    number = float(value)
    return float(f"{number:.{_DIGITS}g}") + 0.0 if math.isfinite(number) else None  # + 0.0: no "-0.0"


def _clean(value: Any) -> Any:
    """Provenance, timings and dataclass fields as JSON values (paths and dates as text, tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_clean(item) for item in items]
    if value is None or isinstance(value, (bool, int, float, np.number, np.bool_)):
        return _num(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value if isinstance(value, str) else str(value)


# --- writing -------------------------------------------------------------------------------------


def write_results(path: str | Path, document: Mapping[str, Any]) -> Path:
    """Write `document` as UTF-8 JSON (indent 2, sorted keys), replacing `path` atomically.

    Raises:
        ValueError: the document holds NaN or infinity (build it with `results_document`); the
            file on disk is left as it was.
    """
    path = Path(path)
    try:
        text = json.dumps(document, allow_nan=False, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    except ValueError as error:
        where = ", ".join(_non_finite(document)[:5]) or "unknown"
        raise ValueError(
            f"{path}: not written: the document holds NaN or infinity at {where}; JSON has no such numbers. "
            "Build it with tunegate.results.results_document, which writes them as null."
        ) from error
    _write_atomic(path, text)
    return path


def write_summary(path: str | Path, document: Mapping[str, Any]) -> Path:
    """Write `summary_markdown(document)` to `path` atomically; plots are linked relative to its folder."""
    path = Path(path)
    _write_atomic(path, summary_markdown(document))
    return path


def _write_atomic(path: Path, text: str) -> None:
    # A reader (a CI step, a browser) never sees half a file: write beside it, then rename over it.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # what open() would give: readable by the CI user and the web server
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _non_finite(value: Any, where: str = "$") -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [where]
    if isinstance(value, Mapping):
        return [hit for key, item in value.items() for hit in _non_finite(item, f"{where}.{key}")]
    if isinstance(value, (list, tuple)):
        return [hit for i, item in enumerate(value) for hit in _non_finite(item, f"{where}[{i}]")]
    return []


# --- summary.md ----------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"[\\`*\[\]~|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def md_escape(value: Any) -> str:
    """Text from a model, an eval set or a message, safe in Markdown prose and table cells.

    `&`, `<`, `>` become entities (GitHub renders inline HTML in .md files); `|` cannot end a table
    cell; `[`, `]`, `*`, backticks, `~` and a `_` at a word's edge cannot start links or emphasis
    (an `_` inside a word, as in prompt_eng, is left readable: it never emphasises); newlines become spaces.
    """
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(lambda match: "\\" + match.group(0), text)
    return re.sub(r"\s*[\r\n]+\s*", " ", text)


def summary_markdown(document: Mapping[str, Any]) -> str:
    """The Markdown report of a `results_document` (or the same dict read back from results.json).

    Verdict first (every gate with its evidence), then means with CIs, finetuned against its
    yardsticks, training, ablation, the pairwise judge, the plots (relative links to the PNGs
    written beside it), what was evaluated, and the time spent.
    """
    passed, counts = document.get("passed"), document.get("gate_counts") or {}
    verdict = "NO GATES RAN" if passed is None else ("PASS" if passed else "FAIL")
    lines = [f"# tunegate release gate: {verdict}", ""]
    provenance = document.get("provenance") or {}
    what = _what_line(provenance)
    if what:
        lines += [what, ""]
    gates = document.get("gates") or []
    if gates:
        failed = [gate["name"] for gate in gates if not gate["passed"]]
        line = f"**{verdict}**: {counts.get('passed', len(gates) - len(failed))} of {len(gates)} gates passed"
        lines += [line + (f"; failed: {', '.join(md_escape(name) for name in failed)}." if failed else "."), ""]
        lines += ["## Gates", ""]
        lines += _table(["verdict", "gate", "evidence"],
                        [["PASS" if g["passed"] else "**FAIL**", md_escape(g["name"]), md_escape(g["message"])]
                         for g in gates])
    else:
        lines += ["No gate ran in this session.", ""]
    labels = document.get("metric_labels") or {}
    lines += _means_md(document.get("means") or [], labels)
    lines += _comparisons_md(document.get("comparisons") or [], labels)
    if document.get("training"):
        lines += _training_md(document["training"])
    if document.get("ablation"):
        lines += _ablation_md(document["ablation"], labels)
    if document.get("pairwise"):
        lines += _pairwise_md(document["pairwise"])
    from tunegate.report.beyond import beyond_markdown  # safety, efficiency, failure taxonomy

    lines += beyond_markdown(document)
    plots = document.get("plots") or []
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            title = md_escape(plot["title"])
            lines += [f"### {title}", "", f"![{title}]({quote(PurePath(plot['file']).as_posix())})", ""]
    if provenance:
        lines += ["## What was evaluated", ""]
        lines += _table(["field", "value"], [[md_escape(key), md_escape(_text(value))]
                                   for key, value in sorted(provenance.items()) if value is not None])
    timings = document.get("timings_s") or {}
    if timings:
        lines += ["## Time spent", ""]
        lines += _table(["phase", "seconds"], [[md_escape(key), _fmt(value, ".1f") if _is_number(value) else
                                                md_escape(value)] for key, value in timings.items()])
    lines += [f"Per-sample scores, every number above and the schema version ({document.get('schema_version')}) "
              "are in `results.json` beside this file.", ""]
    return "\n".join(lines)


def _what_line(provenance: Mapping[str, Any]) -> str:
    parts = []
    if provenance.get("adapter"):
        sha = f" (sha256 {provenance['adapter_sha256']})" if provenance.get("adapter_sha256") else ""
        parts.append(f"adapter {md_escape(provenance['adapter'])}{md_escape(sha)}")
    if provenance.get("base_model"):
        parts.append(f"base model {md_escape(provenance['base_model'])}")
    if provenance.get("eval_set"):
        size = f", {provenance['samples']} samples" if provenance.get("samples") is not None else ""
        sha = f", sha256 {provenance['eval_set_sha256']}" if provenance.get("eval_set_sha256") else ""
        parts.append(f"eval set {md_escape(provenance['eval_set'])}{md_escape(size + sha)}")
    return ("Evaluated: " + "; ".join(parts) + ".") if parts else ""


def _means_md(means: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> list[str]:
    if not means:
        return ["## Mean score per mode", "", "No scores were computed in this session.", ""]
    modes = list(dict.fromkeys(row["mode"] for row in means))
    metrics = list(dict.fromkeys(row["metric"] for row in means))
    by_key = {(row["mode"], row["metric"]): row for row in means}
    most = max(row["n"] for row in means)
    rows = []
    for metric in metrics:
        cells = [md_escape(labels.get(metric, metric))]
        for mode in modes:
            row = by_key.get((mode, metric))
            if row is None:
                cells.append("–")
                continue
            cell = f"{_fmt(row['mean'], '.3f')} {_ci(row['ci_low'], row['ci_high'], '.3f')}"
            cell += f" n={row['n']}" if row["n"] != most else ""
            cell += f" ({row['missing']} missing)" if row.get("missing") else ""
            cells.append(cell)
        rows.append(cells)
    confidence = f"{means[0].get('confidence', MEANS_CONFIDENCE):.0%}"
    return [f"## Mean score per mode ({confidence} bootstrap CI, n={most} samples)", "",
            *_table(["metric", *(md_escape(mode) for mode in modes)], rows)]


def _comparisons_md(comparisons: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> list[str]:
    if not comparisons:
        return []
    first = comparisons[0]
    rows = [
        [md_escape(labels.get(c["metric"], c["metric"])), md_escape(c["b"]), _fmt(c["mean_a"], ".3f"),
         _fmt(c["mean_b"], ".3f"), _fmt(c["diff"], "+.3f"), _ci(c["ci_low"], c["ci_high"], "+.3f"),
         _p(c["p_value"]), _p(c["p_adjusted"]), "yes" if c["significant"] else "no",
         _fmt(c["min_gain"], ".3f"), "PASS" if c["passed"] else "**FAIL**", f"{c['n']} ({c['ties']} ties)"]
        for c in comparisons
    ]
    return [
        "## finetuned against its yardsticks", "",
        f"Paired bootstrap, one-sided p for \"finetuned is better\", Holm-adjusted over {first['family_size']} "
        f"comparisons; significant when the Holm p is below alpha {_fmt(first['alpha'], 'g')}.", "",
        *_table(["metric", "vs", "finetuned", "opponent", "diff", f"{_fmt(first['confidence'], '.0%')} CI", "p",
                 "Holm p", "significant", "min gain", "gain gate", "n"], rows),
    ]


def _training_md(training: Mapping[str, Any]) -> list[str]:
    verdict = training["verdict"]
    best, final, divergence = training.get("best"), training.get("final"), training.get("divergence")
    key = md_escape(training["eval_loss_key"])
    shipped = f"step {verdict['shipped_step']}, {key} {_fmt(verdict['shipped_eval_loss'], '.4f')}"
    rows = [["shipped checkpoint", shipped]]
    if best:
        rows.append([f"best {key}", f"{_fmt(best['eval_loss'], '.4f')} at step {best['step']}"])
    if final:
        train = f", train loss {_fmt(final['train_loss'], '.4f')}" if final.get("train_loss") is not None else ""
        rows.append([f"final {key}", f"{_fmt(final['eval_loss'], '.4f')} at step {final['step']}{train}"])
    rows.append(["divergence", "none" if divergence is None else
                 f"confirmed at step {divergence['confirmed_step']} (best at step {divergence['best_step']})"])
    rows.append(["evaluations", f"{training['evaluations']} ({training['non_finite_evaluations']} not finite)"])
    rows += [["health", md_escape(problem)] for problem in verdict.get("health") or []]
    rows.append(["trainer state", md_escape(training["source"])])
    return ["## Training (overfitting)", "",
            f"**{'PASS' if verdict['passed'] else 'FAIL'}**: {md_escape(verdict['message'])}", "",
            *_table(["field", "value"], rows)]


def _ablation_md(ablation: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    name = md_escape(ablation["variable"])
    lines = [f"## Ablation along {md_escape(ablation['variable_label'])}", "",
             f"Source: {md_escape(ablation['source'])}.", ""]
    lines += [f"**Confounded:** {md_escape(text)}" for text in ablation.get("confounds") or []]
    lines += [f"Note: {md_escape(text)}" for text in ablation.get("notes") or []]
    if ablation.get("confounds") or ablation.get("notes"):
        lines.append("")
    curves = ablation.get("curves") or []
    if curves:
        values = sorted({point["value"] for curve in curves for point in curve["points"]})
        rows = []
        for value in values:
            cells = [_value(value)]
            for curve in curves:
                point = next((p for p in curve["points"] if p["value"] == value), None)
                if point is None:
                    cells.append("–")
                    continue
                text = _fmt(point["mean"], ".3f")
                text = f"**{text}**" if curve["best"]["value"] == value else text
                if point["ci_low"] is not None and point["ci_high"] is not None:
                    text += " " + _ci(point["ci_low"], point["ci_high"], ".3f")
                cells.append(text)
            rows.append(cells)
        lines += ["Mean per swept value (best in bold):", ""]
        lines += _table([name, *(md_escape(labels.get(c["metric"], c["label"])) for c in curves)], rows)
    checks = ablation.get("best_vs_smallest") or []
    if checks:
        rows = []
        for check in checks:
            if check["best_value"] == check["smallest_value"]:
                test = ["–", "–", "–", "the smallest value is the best"]
            elif not check["tested"]:
                test = ["–", "–", "–", "not tested (no per-sample scores)"]
            else:
                test = [_fmt(check["diff"], "+.3f"), _ci(check["ci_low"], check["ci_high"], "+.3f"),
                        _p(check["p_adjusted"]), "significant gain" if check["significant"] else "within noise"]
            enough = check.get("sufficient_value")
            rows.append([md_escape(labels.get(check["metric"], check["metric"])),
                         f"{_value(check['best_value'])} ({_fmt(check['best_mean'], '.3f')})",
                         f"{_value(check['smallest_value'])} ({_fmt(check['smallest_mean'], '.3f')})", *test,
                         "–" if enough is None else f"{_value(enough)} ({_fmt(check['sufficient_mean'], '.3f')})"])
        lines += ["Best run against the sweep's smallest value (paired bootstrap, one-sided; Holm over every metric × "
                  "run compared with the best), and the smallest value within noise of the best:", ""]
        lines += _table(["metric", f"best {name}", f"smallest {name}", "diff", "CI", "Holm p", "verdict",
                         "within noise of the best from"], rows)
    return lines


def _pairwise_md(pairwise: Mapping[str, Any]) -> list[str]:
    net = pairwise["net_win_rate"]
    return ["## Pairwise judge", "", md_escape(pairwise["summary"]), "",
            *_table(["candidate", "opponent", "wins", "ties", "losses", "n", "net win rate",
                     f"{_fmt(net['confidence'], '.0%')} CI"],
                    [[md_escape(pairwise["candidate"]), md_escape(pairwise["opponent"]), str(pairwise["wins"]),
                      str(pairwise["ties"]), str(pairwise["losses"]), str(pairwise["n"]), _fmt(net["mean"], "+.2f"),
                      _ci(net["ci_low"], net["ci_high"], "+.2f")]])]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _ci(low: float | None, high: float | None, spec: str) -> str:
    return f"[{_fmt(low, spec)}, {_fmt(high, spec)}]"


def _p(value: float | None) -> str:
    return "–" if value is None else format_p(value)


def _value(value: float | None) -> str:
    return "–" if value is None else format_value(value)


def _text(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
