"""The answers, sample by sample.

The summary's samples table (every sample with each mode's answer and scores, worst first, sorted
and filtered in the browser by `assets._SCRIPT`), and one sample's evidence for its row in
pytest-html's results table (`sample_html`, `scores_cell`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from tunegate.data import Sample
from tunegate.inference import Generation
from tunegate.report.assets import _STYLE
from tunegate.report.labels import _is_judge, _label, _metrics, _modes, esc


def baseline_by_sample(scores: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """A baseline document's `scores` (metric -> {sample id: value}) turned to sample id -> {metric: value}."""
    by_sample: dict[str, dict[str, float]] = {}
    for metric, per_sample in scores.items():
        for sample_id, value in per_sample.items():
            by_sample.setdefault(str(sample_id), {})[metric] = float(value)
    return by_sample


def _lowest(values: Sequence[float], n: int) -> dict[int, int]:
    """Position -> 1-based rank of the `n` lowest non-NaN values (ties: earlier position first)."""
    finite = sorted((v, p) for p, v in enumerate(values) if not math.isnan(v))
    return {p: rank for rank, (_, p) in enumerate(finite[:max(0, n)], start=1)}


def _primary_metric(metrics: Sequence[str]) -> str | None:
    if "rougeL" in metrics:
        return "rougeL"
    return next((m for m in metrics if not _is_judge(m)), metrics[0] if metrics else None)


def _number(value: float) -> str:
    """A sort key for a data-k attribute: empty for a missing score (the script sorts those last)."""
    return "" if math.isnan(value) else f"{value:.6g}"


def _signed(value: float) -> str:
    if math.isnan(value):
        return "-"
    css = "tg-up" if value > 0 else "tg-down" if value < 0 else ""
    return f'<span class="{css}">{value:+.3f}</span>'


def samples_table_html(
    samples: Sequence[Sample],
    generations: Mapping[str, Sequence[Generation]],
    table: pd.DataFrame,
    *,
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    primary_metric: str | None = None,
    a: str = "finetuned",
    b: str = "prompt_eng",
    worst_n: int = 10,
) -> str:
    """Every sample with its prompt, reference and each mode's answer and scores, worst first.

    Worst first means `a` − `b` on `primary_metric` (default ROUGE-L, else the first non-judge
    metric), most negative first; samples without both scores come last. Only `a` scored: its
    lowest score first. The first `worst_n` rows are marked, and, with a `baseline` (sample id ->
    {metric: value}, see `baseline_by_sample`), the `worst_n` that lost most against it too.
    The sort select, reverse button, text filter and "only marked" box work through
    `summary_script()` (included by `summary_html`); without it the rows stay worst first.

    Args:
        samples: the eval set, in file order (the "eval-set order" sort key).
        generations: answers per mode, as `GateRun.computed_generations()` returns them.
        table: the long score table (sample_id, mode, metric, value).
    """
    scored_modes = set(table["mode"]) if len(table) else set()
    modes = _modes(set(generations) | scored_modes)
    answers = {mode: {g.sample_id: g for g in generations.get(mode, ())} for mode in modes}
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for sample_id, mode, metric, value in zip(table["sample_id"], table["mode"], table["metric"], table["value"]):
        scores.setdefault((str(sample_id), mode), {})[metric] = float(value)
    metrics = _metrics(table)
    primary = primary_metric if primary_metric is not None else _primary_metric(metrics)
    ids = [s.id for s in samples]

    def score(sample_id: str, mode: str, metric: str | None) -> float:
        return scores.get((sample_id, mode), {}).get(metric, math.nan) if metric else math.nan

    paired = a in scored_modes and b in scored_modes
    keys: list[tuple[str, list[float]]] = []  # (label, one value per sample); key 0 orders the rows
    if primary is not None and paired:
        keys.append((f"worst first: {a} − {b} on {_label(primary)}",
                     [score(i, a, primary) - score(i, b, primary) for i in ids]))
    elif primary is not None and scored_modes:
        first = a if a in scored_modes else _modes(scored_modes)[0]
        keys.append((f"worst first: lowest {first} {_label(primary)}", [score(i, first, primary) for i in ids]))
    if keys:
        start = f"{a} lost most to {b}" if paired else f"{first} scored lowest"
        intro = f"Rows start with the samples where {start} on {_label(primary)}"
    baseline_key = None
    if baseline is not None and primary is not None:
        baseline_key = len(keys)
        keys.append((f"lost most vs the accepted baseline: {a} − baseline on {_label(primary)}",
                     [score(i, a, primary) - baseline.get(i, {}).get(primary, math.nan) for i in ids]))
    if paired:
        keys += [(f"{a} − {b}: {_label(m)}", [score(i, a, m) - score(i, b, m) for i in ids]) for m in metrics]
    keys += [(f"{mode}: {_label(m)}", [score(i, mode, m) for i in ids]) for mode in _modes(scored_modes) for m in metrics]
    id_rank = {sample_id: rank for rank, sample_id in enumerate(sorted(ids))}
    keys.append(("sample id", [float(id_rank[i]) for i in ids]))
    keys.append(("eval-set order", [float(position) for position in range(len(ids))]))

    ranked = bool(scored_modes) and primary is not None  # key 0 is a score; otherwise eval-set order
    ordered = keys[0][1] if ranked else keys[-1][1]
    order = sorted(range(len(ids)), key=lambda p: (math.isnan(ordered[p]), 0.0 if math.isnan(ordered[p]) else ordered[p], p))
    worst_rows = _lowest(ordered, worst_n) if ranked else {}
    worst_baseline = _lowest(keys[baseline_key][1], worst_n) if baseline_key is not None else {}

    deltas = [b] if paired and primary is not None else []
    deltas += ["baseline"] if baseline_key is not None else []
    head = "".join(
        ['<th style="width:5em" title="position in the worst-first order">#</th><th style="width:8em">sample</th><th>prompt</th><th>reference</th>']
        + [f'<th style="width:7em">{esc(a)} − {esc(other)}<br>{esc(_label(primary))}</th>' for other in deltas]
        + [f"<th>{esc(mode)}</th>" for mode in modes]
    )
    body = []
    for rank, position in enumerate(order, start=1):
        sample, sample_id = samples[position], ids[position]
        data = " ".join(f'data-k{k}="{_number(values[position])}"' for k, (_, values) in enumerate(keys))
        badges = []
        if position in worst_rows:
            badges.append(f'<span class="tg-badge" title="{esc(keys[0][0])}">worst #{worst_rows[position]}</span>')
        if position in worst_baseline:
            badges.append(f'<span class="tg-badge tg-vs-baseline" title="{esc(keys[baseline_key][0])}">'
                          f"vs baseline #{worst_baseline[position]}</span>")
        cells = [f'<td class="tg-rank">{rank}<br>{"<br>".join(badges)}</td>',
                 f'<td class="tg-id">{esc(sample_id)}</td>',
                 f'<td><div class="tg-text">{esc(sample.prompt)}</div></td>',
                 f'<td><div class="tg-text">{esc(sample.reference)}</div></td>']
        if paired and primary is not None:
            cells.append(f"<td>{_signed(keys[0][1][position])}</td>")
        if baseline_key is not None:
            cells.append(f"<td>{_signed(keys[baseline_key][1][position])}</td>")
        for mode in modes:
            cells.append(_answer_cell(answers[mode].get(sample_id), scores.get((sample_id, mode), {}), primary))
        marked = " tg-worst" if position in worst_rows or position in worst_baseline else ""
        body.append(f'<tr class="tg-row{marked}" {data}>{"".join(cells)}</tr>')
    selected = 0 if ranked else len(keys) - 1
    options = "".join(f'<option value="{k}"{" selected" if k == selected else ""}>{esc(label)}</option>'
                      for k, (label, _) in enumerate(keys))
    if worst_rows:
        intro += (f"; the {len(worst_rows)} worst are marked"
                  f"{', and those that lost most against the accepted baseline' if worst_baseline else ''}. ")
    else:
        intro = "Rows are in eval-set order. "
    return (
        '<div class="tg-samples"><h2>Answers side by side</h2>'
        f'<p class="tg-caption">{esc(intro)}Choose a score to sort by (missing scores go last), reverse the order, or '
        "filter by any text in the row; long texts scroll inside their cell.</p>"
        '<div class="tg-controls">'
        f'<label>sort by <select class="tg-sort">{options}</select></label>'
        '<button type="button" class="tg-reverse">lowest first (click to reverse)</button>'
        '<label>filter <input type="search" class="tg-filter" placeholder="text in id, prompt, reference or answers">'
        "</label>"
        '<label><input type="checkbox" class="tg-only-marked"> only marked rows</label>'
        f'<span class="tg-count">{len(ids)} samples</span></div>'
        f'<div class="tg-scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        "</div>"
    )


def _answer_cell(generation: Generation | None, scores: Mapping[str, float], primary: str | None) -> str:
    if generation is None and not scores:
        return "<td>-</td>"
    text = f'<div class="tg-text">{esc(generation.text)}</div>' if generation is not None else "<i>no answer</i>"
    if generation is not None and generation.truncated:
        text += f'<div class="tg-truncated">cut at max_new_tokens ({esc(generation.output_tokens)} tokens)</div>'
    items = " · ".join(
        f'<span class="{"tg-primary" if m == primary else ""}">{esc(_label(m))} {v:.3f}</span>' for m, v in scores.items()
    )
    return f'<td>{text}<div class="tg-scores">{items}</div></td>'


def sample_html(sample: Sample, generation: Generation, scores: Mapping[str, float]) -> str:
    """One sample's evidence for its row in the results table: prompt, reference, answer, scores."""
    score_text = " · ".join(f"{_label(m)} {v:.3f}" for m, v in scores.items())
    facts = (
        f"finish: {generation.finish_reason} · {generation.output_tokens} output tokens · "
        f"{generation.latency_s:.2f} s{' (cached)' if generation.cached else ''}"
    )
    return (
        f'{_STYLE}<div class="tg tg-sample">'
        f"<b>prompt</b><pre>{esc(sample.prompt)}</pre>"
        f"<b>reference</b><pre>{esc(sample.reference)}</pre>"
        f"<b>answer ({esc(generation.mode)})</b><pre>{esc(generation.text)}</pre>"
        f"<p>{esc(score_text)}<br>{esc(facts)}</p></div>"
    )


def scores_cell(scores: Iterable[tuple[str, float]]) -> str:
    """Compact per-sample scores for the results table's Scores column."""
    return esc(" ".join(f"{_label(m)}={v:.3f}" for m, v in scores))
