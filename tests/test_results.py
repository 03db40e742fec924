"""Tests for tunegate.results: the evidence in, results.json and summary.md out, the same numbers in both.

Inputs are the real objects the session builds: gain checks and gates from `tunegate.gates`, a loss
curve read by `load_trainer_state` from a trainer_state.json written here, an ablation from
`describe_sweep`/`curve_from_scores`/`cheapest_checks`. No model is loaded.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tunegate.ablation import AblationResult, SweepRun, cheapest_checks, curve_from_scores, describe_sweep
from tunegate.gates import GateResult, gain_checks, gain_gate, threshold_gate
from tunegate.judge import PairwiseResult
from tunegate.overfitting import detect_divergence, load_trainer_state, shipped_checkpoint_verdict
from tunegate.report import mode_metric_cis
from tunegate.results import (
    SCHEMA_VERSION,
    finite_rows,
    md_escape,
    results_document,
    summary_markdown,
    write_results,
    write_summary,
)
from tunegate.run import TrainingEvidence
from tunegate.stats import bootstrap_mean_ci, format_p

N = 16
RNG = np.random.default_rng(11)
# Independent noise per cell. finetuned beats base clearly on both metrics; against prompt_eng it gains
# on rougeL, not on bertscore (same level).
VALUES = {
    (mode, metric): level + RNG.uniform(-0.05, 0.05, N)
    for (mode, metric), level in {
        ("base", "rougeL"): 0.20, ("base", "bertscore"): 0.70, ("prompt_eng", "rougeL"): 0.30,
        ("prompt_eng", "bertscore"): 0.80, ("finetuned", "rougeL"): 0.45, ("finetuned", "bertscore"): 0.80,
    }.items()
}
HOSTILE = "x | y <script>alert(1)</script> & [click](http://evil.example) **bold**"


def score_table(values: dict[tuple[str, str], np.ndarray] = VALUES) -> pd.DataFrame:
    # Rows in the plugin's order of arrival (finetuned first), so ordering by mode is the document's doing.
    rows = [(f"q{i:02d}", mode, metric, float(value))
            for (mode, metric), column in sorted(values.items(), key=lambda item: item[0][0] != "finetuned")
            for i, value in enumerate(column)]
    return pd.DataFrame(rows, columns=["sample_id", "mode", "metric", "value"])


def write_diverging_state(directory: Path) -> Path:
    """A run whose eval loss is best at step 100, then rises for 5 evaluations while train loss falls."""
    evals = {20: 1.60, 40: 1.40, 60: 1.25, 80: 1.15, 100: 1.10, 120: 1.16, 140: 1.24, 160: 1.33, 180: 1.41, 200: 1.50}
    history = []
    for step in range(10, 201, 10):
        history.append({"epoch": step / 100, "loss": 2.0 * 0.99**step, "learning_rate": 1e-4, "step": step})
        if step in evals:
            history.append({"epoch": step / 100, "eval_loss": evals[step], "eval_runtime": 1.0, "step": step})
    state = {"global_step": 200, "max_steps": 200, "num_train_epochs": 2, "log_history": history,
             "best_global_step": None, "best_metric": None, "best_model_checkpoint": None}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trainer_state.json").write_text(json.dumps(state, indent=2))
    return directory


def training_evidence(tmp_path: Path) -> TrainingEvidence:
    curve = load_trainer_state(write_diverging_state(tmp_path / "run"))
    divergence = detect_divergence(curve)
    return TrainingEvidence(curve, divergence, shipped_checkpoint_verdict(curve, divergence))


def sweep_run(rank: int) -> SweepRun:
    return SweepRun(adapter_dir=Path(f"/runs/r{rank}"), label=f"r{rank}", lora_rank=rank, lora_alpha=2.0 * rank,
                    target_modules=("k_proj", "q_proj"), lora_dropout=0.05, base_model="base", peft_type="LORA",
                    use_rslora=False, use_dora=False, epochs=3.0, train_samples=352)


def ablation_result() -> AblationResult:
    sweep = describe_sweep([sweep_run(8), sweep_run(2), sweep_run(4)], "lora_rank")
    base = np.linspace(0.2, 0.5, 20)
    by_run = {"r2": {"rougeL": base, "val_loss": 1.5 - base},
              "r4": {"rougeL": base + 0.01 * np.tile([1, -1], 10), "val_loss": 1.5 - base},
              "r8": {"rougeL": base + 0.12, "val_loss": 1.2 - base}}
    tables = {label: pd.DataFrame([(f"q{i:02d}", "finetuned", metric, float(v)) for metric, column in scores.items()
                                   for i, v in enumerate(column)], columns=["sample_id", "mode", "metric", "value"])
              for label, scores in by_run.items()}
    curves = tuple(curve_from_scores(sweep, tables, metric, iters=2000) for metric in ("rougeL", "val_loss"))
    checks = cheapest_checks(curves, tables, iters=2000)
    return AblationResult("lora_rank", curves, checks, sweep, "3 adapters", seconds=1.5, generated=60)


def pairwise_result() -> PairwiseResult:
    outcomes = {f"q{i:02d}": outcome for i, outcome in enumerate([1, 1, 0, -1, 1, 0, 1, 1])}
    net = bootstrap_mean_ci(list(outcomes.values()), iters=2000)
    return PairwiseResult("finetuned", "prompt_eng", outcomes, wins=5, ties=2, losses=1, first_position_picks=7,
                          decided_verdicts=12, errors=1, net=net)


@pytest.fixture(scope="module")
def checks():
    return gain_checks(score_table(), ["rougeL", "bertscore"], ["prompt_eng", "base"], iters=2000, seed=3,
                       min_gain={"rougeL": 0.05})


def full_document(tmp_path: Path, checks, **overrides) -> dict:
    table = score_table()
    gates = [threshold_gate(table, "finetuned", "rougeL", 0.4), *(gain_gate(check) for check in checks)]
    arguments = dict(
        provenance={"base_model": "demo", "adapter": "fixtures/demo/adapter", "adapter_sha256": "ab12cd34ef56ab78",
                    "eval_set": "fixtures/eval.jsonl", "eval_set_sha256": "0011223344556677", "samples": N,
                    "decoding": "greedy", "judge": None, "training_state": tmp_path / "run"},
        table=table, gates=gates, gain_checks=checks, training=training_evidence(tmp_path),
        ablation=ablation_result(),
        pairwise=pairwise_result(), timings={"generation_s": 12.34, "scoring_s": 1.0},
        plots={"Mean score per mode": "metric_means.png", "Training loss": "training loss.png"}, seed=7,
    )
    return results_document(**(arguments | overrides))


# --- results.json --------------------------------------------------------------------------------


def test_document_round_trips_through_the_file_atomically(tmp_path: Path, checks) -> None:
    document = full_document(tmp_path, checks)
    out = tmp_path / "reports" / "results.json"
    out.parent.mkdir()
    out.write_text("old")
    assert write_results(out, document) == out
    text = out.read_text(encoding="utf-8")
    assert json.loads(text) == document and document["schema_version"] == SCHEMA_VERSION == 1
    assert text.endswith("}\n") and '\n  "ablation": {' in text  # indent 2
    assert [p.name for p in out.parent.iterdir()] == ["results.json"]  # no temporary file left behind
    top = [line.split('"')[1] for line in text.splitlines() if re.match(r'^  "', line)]
    assert top == sorted(top) and "timings_s" in top  # sorted keys: runs diff line by line
    write_results(out, document)
    assert out.read_text(encoding="utf-8") == text  # the same evidence gives the same bytes


def test_non_ascii_provenance_is_written_as_utf8(tmp_path: Path, checks) -> None:
    document = full_document(tmp_path, checks, provenance={"eval_set": "客服问答.jsonl"})
    out = write_results(tmp_path / "results.json", document)
    assert "客服问答.jsonl" in out.read_text(encoding="utf-8")


def test_means_are_mode_metric_cis_in_mode_order(tmp_path: Path, checks) -> None:
    document = full_document(tmp_path, checks)
    expected = mode_metric_cis(score_table(), seed=7)
    means = document["means"]
    assert [row["mode"] for row in means] == ["base"] * 2 + ["prompt_eng"] * 2 + ["finetuned"] * 2
    assert len(means) == len(expected) == 6
    for _, row in expected.iterrows():
        (found,) = [m for m in means if (m["mode"], m["metric"]) == (row["mode"], row["metric"])]
        for key in ("mean", "ci_low", "ci_high"):
            assert found[key] == pytest.approx(row[key], rel=1e-5)
        assert (found["n"], found["missing"], found["confidence"]) == (N, 0, 0.95)
    # the seed reaches the bootstrap: another seed moves an interval
    other = results_document(provenance={}, table=score_table(), gates=[], seed=8)["means"]
    assert any(a["ci_low"] != b["ci_low"] for a, b in zip(means, other))


def test_comparisons_carry_the_gain_checks_numbers(tmp_path: Path, checks) -> None:
    comparisons = full_document(tmp_path, checks)["comparisons"]
    assert len(comparisons) == len(checks) == 4
    for entry, check in zip(comparisons, checks):
        c = check.comparison
        assert (entry["metric"], entry["a"], entry["b"]) == (check.metric, "finetuned", check.opponent)
        for key, value in {"diff": c.diff, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value,
                           "p_adjusted": check.p_adjusted, "mean_a": c.mean_a, "mean_b": c.mean_b}.items():
            assert entry[key] == pytest.approx(value, rel=1e-5)
        assert (entry["n"], entry["ties"], entry["family_size"]) == (N, c.ties, 4)
        assert entry["significant"] is (entry["p_adjusted"] < entry["alpha"]) is check.significant
        assert entry["passed"] is check.passed and entry["min_gain"] == check.min_gain
    by_key = {(e["b"], e["metric"]): e for e in comparisons}
    assert by_key[("base", "rougeL")]["significant"] and by_key[("base", "rougeL")]["min_gain"] == 0.05
    assert not by_key[("prompt_eng", "bertscore")]["significant"]  # both values appear, so the flag is tested


def test_overall_verdict_and_counts(tmp_path: Path, checks) -> None:
    document = full_document(tmp_path, checks)
    assert not all(check.passed for check in checks)  # prompt_eng/bertscore fails its gain gate
    assert document["passed"] is False
    assert document["gate_counts"] == {"total": 5, "passed": 4, "failed": 1}
    assert [g["name"] for g in document["gates"]][0] == "threshold[finetuned-rougeL]"
    passing = [GateResult("a", True, "ok"), GateResult("b", True, "ok")]
    assert full_document(tmp_path, checks, gates=passing)["passed"] is True
    assert full_document(tmp_path, checks, gates=[*passing, GateResult("c", False, "no")])["passed"] is False
    nothing = full_document(tmp_path, checks, gates=[])
    assert nothing["passed"] is None and nothing["gate_counts"] == {"total": 0, "passed": 0, "failed": 0}


def test_non_finite_scores_are_null_and_counted_missing(tmp_path: Path) -> None:
    table = score_table()
    rows = table.index[(table["mode"] == "finetuned") & (table["metric"] == "rougeL")]
    table.loc[rows[0], "value"] = math.nan
    table.loc[rows[1], "value"] = math.inf
    document = results_document(provenance={"temperature": math.nan, "path": Path("a/b")}, table=table, gates=[],
                                timings={"judge_s": math.inf})
    text = json.dumps(document, allow_nan=False)  # raises on any NaN or infinity left
    nulls = [s for s in document["scores"] if s["value"] is None]
    assert {(s["sample_id"], s["mode"], s["metric"]) for s in nulls} == {("q00", "finetuned", "rougeL"),
                                                                          ("q01", "finetuned", "rougeL")}
    (row,) = [m for m in document["means"] if (m["mode"], m["metric"]) == ("finetuned", "rougeL")]
    finite = VALUES[("finetuned", "rougeL")][2:]
    assert (row["n"], row["missing"]) == (N - 2, 2) and row["mean"] == pytest.approx(finite.mean(), rel=1e-5)
    assert document["provenance"] == {"temperature": None, "path": "a/b"} and document["timings_s"]["judge_s"] is None
    assert "NaN" not in text and "Infinity" not in text
    assert "2 missing" in summary_markdown(document)
    # The report passes the intervals it drew for its own table: the same means, without a second draw.
    given = results_document(provenance={}, table=table, gates=[], cis=mode_metric_cis(finite_rows(table), seed=0))
    assert given["means"] == results_document(provenance={}, table=table, gates=[])["means"]


def test_a_metric_with_no_finite_score_has_a_null_mean(tmp_path: Path) -> None:
    table = pd.DataFrame([("q0", "base", "rougeL", math.nan), ("q1", "base", "rougeL", math.nan)],
                         columns=["sample_id", "mode", "metric", "value"])
    (row,) = results_document(provenance={}, table=table, gates=[])["means"]
    assert row["mean"] is None and row["n"] == 0 and row["missing"] == 2


def test_write_refuses_nan_and_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    out.write_text("previous run")
    with pytest.raises(ValueError, match=r"NaN or infinity at \$\.means\[0\]\.mean"):
        write_results(out, {"schema_version": 1, "means": [{"mean": math.nan}]})
    assert out.read_text() == "previous run" and len(list(tmp_path.iterdir())) == 1


def test_per_sample_scores_are_the_long_table(tmp_path: Path, checks) -> None:
    document = full_document(tmp_path, checks)
    frame = pd.DataFrame(document["scores"])
    assert list(frame.columns) == ["sample_id", "mode", "metric", "value"] and len(frame) == 6 * N
    assert list(dict.fromkeys(frame["mode"])) == ["base", "prompt_eng", "finetuned"]
    merged = frame.merge(score_table(), on=["sample_id", "mode", "metric"], suffixes=("", "_table"))
    assert len(merged) == 6 * N and np.allclose(merged["value"], merged["value_table"], rtol=1e-5, atol=0)


def test_training_summary_and_divergence(tmp_path: Path, checks) -> None:
    training = full_document(tmp_path, checks)["training"]
    assert training["best"] == {"step": 100, "eval_loss": 1.1}
    assert training["final"]["step"] == 200 and training["final"]["eval_loss"] == 1.5
    assert training["final"]["train_loss"] == pytest.approx(2.0 * 0.99**200, rel=1e-5)
    assert training["evaluations"] == 10 and training["non_finite_evaluations"] == 0
    divergence = training["divergence"]
    assert divergence["best_step"] == 100 and divergence["confirmed_step"] > 100 and divergence["patience"] == 3
    assert divergence["message"].startswith("validation loss diverged")
    verdict = training["verdict"]
    assert verdict["passed"] is False and verdict["shipped_step"] == 200
    assert "after the divergence" in verdict["message"]
    assert training["source"].endswith("trainer_state.json")


def test_ablation_points_best_and_checks(tmp_path: Path, checks) -> None:
    result = ablation_result()
    ablation = full_document(tmp_path, checks)["ablation"]
    assert ablation["variable"] == "lora_rank" and ablation["variable_label"] == "LoRA rank r"
    assert [run["value"] for run in ablation["runs"]] == [2, 4, 8] and ablation["confounds"] == []
    rouge, loss = ablation["curves"]
    assert [p["value"] for p in rouge["points"]] == [2, 4, 8] and rouge["best"]["value"] == 8
    for entry, point in zip(rouge["points"], result.curves[0].points):
        assert entry["mean"] == pytest.approx(point.mean, rel=1e-5)
        assert entry["ci_low"] == pytest.approx(point.ci_low, rel=1e-5)
        assert (entry["n"], entry["label"]) == (20, point.label)
    assert loss["higher_is_better"] is False and loss["best"]["value"] == 8
    by_metric = {c["metric"]: c for c in ablation["best_vs_smallest"]}
    assert by_metric["rougeL"]["diff"] == pytest.approx(0.12, rel=1e-5) and by_metric["rougeL"]["significant"]
    assert by_metric["val_loss"]["diff"] == pytest.approx(-0.3, rel=1e-5)  # the loss fell: on its own scale
    assert by_metric["val_loss"]["ci_low"] <= -0.3 <= by_metric["val_loss"]["ci_high"]
    # best vs each other run (2 of them) on 2 metrics: one Holm family of 4
    assert by_metric["rougeL"]["family_size"] == 4 and by_metric["rougeL"]["message"] == str(result.checks[0])
    assert by_metric["rougeL"]["sufficient_value"] == result.checks[0].sufficient.value


def test_pairwise_summary(tmp_path: Path, checks) -> None:
    pairwise = full_document(tmp_path, checks)["pairwise"]
    assert (pairwise["wins"], pairwise["ties"], pairwise["losses"], pairwise["n"]) == (5, 2, 1, 8)
    assert pairwise["net_win_rate"]["mean"] == 0.5 and pairwise["outcomes"]["q03"] == -1
    assert pairwise["summary"] == pairwise_result().summary()


def test_absent_evidence_is_null(tmp_path: Path) -> None:
    document = results_document(provenance={}, table=score_table(), gates=[])
    assert document["training"] is document["ablation"] is document["pairwise"] is None
    assert document["comparisons"] == [] and document["plots"] == [] and document["timings_s"] == {}
    assert "## Training" not in summary_markdown(document)


# --- summary.md ----------------------------------------------------------------------------------


def cells(line: str) -> list[str]:
    """A Markdown table row split as GFM splits it: on pipes not escaped with a backslash."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def section(markdown: str, title: str) -> list[str]:
    """The lines of one `## title` section of the report."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {title}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_summary_shows_the_documents_numbers(tmp_path: Path, checks) -> None:
    document = full_document(tmp_path, checks)
    markdown = summary_markdown(document)
    assert markdown.startswith("# tunegate release gate: FAIL\n")
    assert "**FAIL**: 4 of 5 gates passed; failed: gain\\[finetuned-vs-prompt_eng-bertscore\\]." in markdown
    lines = section(markdown, "Mean score per mode")
    (means_row,) = [cells(line) for line in lines if line.startswith("| ROUGE-L | ")]
    header = cells(next(line for line in lines if line.startswith("| metric | base |")))
    for mode in ("base", "prompt_eng", "finetuned"):
        (row,) = [m for m in document["means"] if (m["mode"], m["metric"]) == (mode, "rougeL")]
        numbers = [float(x) for x in re.findall(r"[-+]?\d+\.\d+", means_row[header.index(mode)])]
        assert numbers == [round(row["mean"], 3), round(row["ci_low"], 3), round(row["ci_high"], 3)]
    for comparison in document["comparisons"]:
        label = document["metric_labels"][comparison["metric"]]
        (row,) = [cells(line) for line in section(markdown, "finetuned against")
                  if line.startswith(f"| {label} | {comparison['b']} | ")]
        assert float(row[4]) == pytest.approx(comparison["diff"], abs=5e-4)
        assert row[4] == f"{comparison['diff']:+.3f}" and row[7] == format_p(comparison["p_adjusted"])
        assert row[6] == format_p(comparison["p_value"]) and row[8] == ("yes" if comparison["significant"] else "no")
    assert "Holm-adjusted over 4 comparisons" in markdown
    best = document["training"]["best"]
    assert f"| best eval_loss | {best['eval_loss']:.4f} at step {best['step']} |" in markdown
    assert "| 8 | **" in markdown  # the ablation's best point, bold
    assert "## Pairwise judge" in markdown and "| finetuned | prompt_eng | 5 | 2 | 1 | 8 | +0.50 |" in markdown
    assert "| generation_s | 12.3 |" in markdown


def test_summary_links_the_plots_beside_it(tmp_path: Path, checks) -> None:
    markdown = summary_markdown(full_document(tmp_path, checks))
    assert "![Mean score per mode](metric_means.png)" in markdown
    assert "![Training loss](training%20loss.png)" in markdown


def test_summary_escapes_messages_and_provenance(tmp_path: Path, checks) -> None:
    gates = [GateResult("pipes", False, HOSTILE), GateResult("ok", True, "fine")]
    document = full_document(tmp_path, checks, gates=gates, provenance={"adapter": HOSTILE, "note": "a\nb | c"})
    markdown = summary_markdown(document)
    assert "<script>" not in markdown and "<" not in markdown.replace("&lt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and " &amp; " in markdown
    prose = "\n".join(line for line in markdown.splitlines() if not line.startswith("![")) # our plot links aside
    assert not re.search(r"(?<!\\)\]\(", prose) and "**bold**" not in markdown  # no link, no emphasis injected
    (row,) = [line for line in markdown.splitlines() if line.startswith("| **FAIL** | pipes |")]
    assert len(cells(row)) == 3 and "x \\| y" in cells(row)[2]
    (note,) = [line for line in markdown.splitlines() if line.startswith("| note |")]
    assert cells(note) == ["note", "a b \\| c"]


def test_summary_from_the_file_equals_summary_from_the_document(tmp_path: Path, checks) -> None:
    document = full_document(tmp_path, checks)
    out = write_results(tmp_path / "results.json", document)
    summary = write_summary(tmp_path / "summary.md", document)
    assert summary.read_text(encoding="utf-8") == summary_markdown(json.loads(out.read_text(encoding="utf-8")))


def test_summary_without_gates_or_scores(tmp_path: Path) -> None:
    empty = pd.DataFrame(columns=["sample_id", "mode", "metric", "value"])
    markdown = summary_markdown(results_document(provenance={}, table=empty, gates=[]))
    assert markdown.startswith("# tunegate release gate: NO GATES RAN")
    assert "No gate ran in this session." in markdown and "No scores were computed" in markdown


@pytest.mark.parametrize(("text", "expected"), [
    ("prompt_eng max_new_tokens", "prompt_eng max_new_tokens"),  # intraword: never emphasis, left readable
    ("_private_ and *x*", r"\_private\_ and \*x\*"),
    ("a|b", r"a\|b"),
    ("<b>&</b>", "&lt;b&gt;&amp;&lt;/b&gt;"),
    ("[x](y) `c` ~~s~~ \\", r"\[x\](y) \`c\` \~\~s\~\~ \\"),
    ("two\r\nlines\n\nhere", "two lines here"),
])
def test_md_escape(text: str, expected: str) -> None:
    assert md_escape(text) == expected
