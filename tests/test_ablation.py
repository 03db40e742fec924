"""Tests for tunegate.ablation: adapter runs in, sweep with its confounds, curves and a figure out.

Runs are written by hand as the files a real run leaves (adapter_config.json as peft writes it, a
trainer_state.json, the demo's training_run.json); no weights, since the sweep reads none. The demo's
committed runs pin what a real epochs "sweep" looks like: it also changes the training data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tunegate.ablation import (
    AblationCurve,
    AblationPoint,
    Sweep,
    ablation_figure,
    curve_from_records,
    curve_from_scores,
    describe_sweep,
    metric_columns,
    metric_higher_is_better,
    read_sweep_run,
    records_from_csv,
)
from tunegate.errors import AblationError, TunegateError
from tunegate.report import figure_png

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "fixtures" / "demo"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEED_CSV = """variable,value,rouge_l,bert_score_f1,judge_total,train_loss,val_loss
rank,4,0.421,0.831,3.52,0.821,0.934
rank,8,0.463,0.847,3.71,0.798,0.901
rank,16,0.481,0.856,3.84,0.771,0.889
rank,32,0.479,0.853,3.79,0.748,0.911
rank,64,0.471,0.849,3.74,0.712,0.952
epoch,1,0.441,0.832,3.61,0.891,0.912
epoch,2,0.481,0.856,3.84,0.771,0.889
epoch,3,0.488,0.859,3.87,0.698,0.903
epoch,5,0.463,0.841,3.65,0.612,0.981
data_size,100,0.389,0.798,3.21,0.912,1.043
data_size,500,0.481,0.856,3.84,0.771,0.889
"""


def write_run(
    directory: Path,
    *,
    rank: int = 8,
    alpha: float | None = None,
    epochs: float = 3.0,
    train_samples: int | None = 352,
    dropout: float = 0.05,
    modules: list[str] | str | None = None,
    base: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
    state: bool = True,
) -> Path:
    """An adapter directory as a run leaves it, minus the weights: config, trainer state, training_run.json."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "base_model_name_or_path": base, "bias": "none", "lora_alpha": 2 * rank if alpha is None else alpha,
        "lora_dropout": dropout, "peft_type": "LORA", "r": rank, "rank_pattern": {}, "task_type": "CAUSAL_LM",
        "target_modules": ["v_proj", "q_proj", "o_proj", "k_proj"] if modules is None else modules,
        "use_dora": False, "use_rslora": False,
    }
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    if state:
        steps = int(epochs * 10)
        history = [{"epoch": step / 10, "loss": 2.0 - step / 100, "step": step} for step in range(5, steps + 1, 5)]
        history.append({"epoch": epochs, "eval_loss": 1.5, "step": steps})
        (directory / "trainer_state.json").write_text(
            json.dumps({"global_step": steps, "log_history": history, "num_train_epochs": int(np.ceil(epochs))})
        )
    if train_samples is not None:
        (directory / "training_run.json").write_text(json.dumps({"arguments": {"rank": rank}, "train_samples": train_samples}))
    return directory


def rank_sweep(tmp_path: Path, ranks: tuple[int, ...] = (2, 4, 8, 16), **overrides: dict[int, object]) -> list:
    """Runs r2, r4, ... written in a shuffled order; overrides map a write_run keyword to {rank: value}."""
    runs = []
    for rank in reversed(ranks):
        settings = {key: by_rank[rank] for key, by_rank in overrides.items() if rank in by_rank}
        runs.append(read_sweep_run(write_run(tmp_path / f"r{rank}", rank=rank, **settings)))
    return runs


def scores_table(values: dict[str, list[float]], mode: str = "finetuned") -> pd.DataFrame:
    rows = [(f"s{i:02d}", mode, metric, value) for metric, column in values.items() for i, value in enumerate(column)]
    return pd.DataFrame(rows, columns=["sample_id", "mode", "metric", "value"])


# --- reading runs --------------------------------------------------------------------------------


def test_read_sweep_run_reads_settings_without_weights(tmp_path: Path) -> None:
    run = read_sweep_run(write_run(tmp_path / "run", rank=16, epochs=2.5, modules=["v_proj", "q_proj", "q_proj"]))
    assert (run.label, run.lora_rank, run.lora_alpha, run.lora_dropout) == ("run", 16, 32.0, 0.05)
    assert run.target_modules == ("q_proj", "v_proj")
    assert (run.epochs, run.train_samples, run.peft_type) == (2.5, 352, "LORA")
    assert run.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert not (tmp_path / "run" / "adapter_model.safetensors").exists()
    assert read_sweep_run(tmp_path / "run", label="rank 16").label == "rank 16"


def test_read_sweep_run_optional_files_and_all_linear(tmp_path: Path) -> None:
    run = read_sweep_run(write_run(tmp_path / "bare", modules="all-linear", state=False, train_samples=None))
    assert (run.target_modules, run.epochs, run.train_samples) == ("all-linear", None, None)


def test_epochs_fall_back_to_latest_checkpoint_and_num_train_epochs(tmp_path: Path) -> None:
    out = write_run(tmp_path / "out", state=False)
    for step, epochs in ((10, 1), (20, 2)):
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(
            json.dumps({"log_history": [{"loss": 1.0, "step": step}], "num_train_epochs": epochs})
        )
    assert read_sweep_run(out).epochs == 2.0


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda d: None, "no such directory"),
        (lambda d: (d.mkdir(), (d / "adapter_model.safetensors").write_bytes(b"x")), "adapter_config.json: missing (found: adapter_model.safetensors)"),
        (lambda d: (d.mkdir(), (d / "adapter_config.json").write_text('{"r": 8,')), "adapter_config.json line 1 column 9: not valid JSON"),
        (lambda d: (d.mkdir(), (d / "adapter_config.json").write_text("[8]")), "a JSON list, not an object"),
        (lambda d: (d.mkdir(), (d / "adapter_config.json").write_text('{"r": "eight"}')), "\"r\" is 'eight', not a positive integer"),
        (lambda d: (write_run(d), (d / "training_run.json").write_text("{")), "training_run.json line 1"),
    ],
    ids=["no-dir", "no-config", "bad-json", "not-object", "bad-rank", "bad-run-file"],
)
def test_read_sweep_run_errors_name_file_and_fix(tmp_path: Path, setup, expected: str) -> None:
    setup(tmp_path / "run")
    with pytest.raises(AblationError) as caught:
        read_sweep_run(tmp_path / "run")
    assert expected in str(caught.value) and str(tmp_path / "run") in str(caught.value)
    assert isinstance(caught.value, TunegateError)


# --- sweeps --------------------------------------------------------------------------------------


def test_clean_rank_sweep_alpha_scaling_is_one_note_not_a_confound(tmp_path: Path) -> None:
    sweep = describe_sweep(rank_sweep(tmp_path), "lora_rank")
    assert sweep.values == (2, 4, 8, 16) and [run.label for run in sweep.runs] == ["r2", "r4", "r8", "r16"]
    assert not sweep.confounded and sweep.confounds == ()
    assert len(sweep.notes) == 1 and sweep.warnings == sweep.notes
    assert sweep.notes[0].startswith("lora_alpha scales with rank: alpha = 2 × r in every run (4 (r2), 8 (r4), 16 (r8), 32 (r16))")
    assert "not counted as a confound" in sweep.notes[0]
    assert str(sweep) == "lora_rank sweep of 4 runs: 2 (r2), 4 (r4), 8 (r8), 16 (r16); nothing else differs"


def test_rank_sweep_with_fixed_alpha_is_noted(tmp_path: Path) -> None:
    sweep = describe_sweep(rank_sweep(tmp_path, alpha={2: 16, 4: 16, 8: 16, 16: 16}), "lora_rank")
    assert not sweep.confounded
    assert sweep.notes == ("lora_alpha is fixed at 16 while the rank varies, so the scaling alpha/r falls from 8 to 1: "
                           "rank and scaling change together (a common choice, noted rather than counted as a confound)",)


def test_rank_sweep_with_alpha_changed_otherwise_is_confounded(tmp_path: Path) -> None:
    sweep = describe_sweep(rank_sweep(tmp_path, alpha={2: 4, 4: 8, 8: 16, 16: 16}), "lora_rank")
    assert sweep.confounds == ("lora_alpha differs: 4 (r2), 8 (r4), 16 (r8, r16)",)


def test_confounded_sweep_names_every_other_difference(tmp_path: Path) -> None:
    runs = rank_sweep(tmp_path, epochs={2: 3.0, 4: 3.0, 8: 5.0, 16: 5.0}, dropout={16: 0.1},
                      base={2: "other/base-model"}, modules={4: "all-linear"})
    sweep = describe_sweep(runs, "lora_rank")
    assert sweep.confounded
    assert sweep.confounds == (
        "epochs differs: 3 (r2, r4), 5 (r8, r16)",
        "base_model differs: other/base-model (r2), HuggingFaceTB/SmolLM2-135M-Instruct (r4, r8, r16)",
        "target_modules differs: [k_proj, o_proj, q_proj, v_proj] (r2, r8, r16), all-linear (r4)",
        "lora_dropout differs: 0.05 (r2, r4, r8), 0.1 (r16)",
    )
    assert "confounded: epochs differs" in str(sweep)


def test_unrecorded_settings_are_notes(tmp_path: Path) -> None:
    sweep = describe_sweep(rank_sweep(tmp_path, train_samples={2: None, 4: None}), "lora_rank")
    assert not sweep.confounded
    assert any(note.startswith("train_samples not recorded for r2, r4") for note in sweep.notes)


def test_epochs_sweep_accepts_seed_name_and_orders_by_epochs(tmp_path: Path) -> None:
    runs = [read_sweep_run(write_run(tmp_path / f"e{e}", epochs=e)) for e in (5, 1, 3)]
    sweep = describe_sweep(runs, "epoch")
    assert (sweep.variable, sweep.values, sweep.confounds) == ("epochs", (1.0, 3.0, 5.0), ())


def test_duplicate_values_are_an_error_that_suggests_what_differs(tmp_path: Path) -> None:
    runs = [read_sweep_run(write_run(tmp_path / name, epochs=e)) for name, e in (("a", 1), ("b", 3), ("c", 1))]
    runs[1] = read_sweep_run(write_run(tmp_path / "b", rank=8, epochs=3))
    with pytest.raises(AblationError, match=r"lora_rank = 8 in 3 runs: a \(.*\), b \(.*\), c \(.*\)\. .*sweep epochs"):
        describe_sweep(runs, "lora_rank")


@pytest.mark.parametrize(
    ("variable", "count", "expected"),
    [("learning_rate", 2, "cannot sweep 'learning_rate'"), ("lora_rank", 1, "needs at least 2 runs"),
     ("train_samples", 2, "train_samples is not recorded for nodata")],
)
def test_sweep_usage_errors(tmp_path: Path, variable: str, count: int, expected: str) -> None:
    runs = [read_sweep_run(write_run(tmp_path / "r2", rank=2)),
            read_sweep_run(write_run(tmp_path / "nodata", rank=4, train_samples=None))][:count]
    with pytest.raises(AblationError, match=expected):
        describe_sweep(runs, variable)


def test_same_label_twice_is_an_error(tmp_path: Path) -> None:
    runs = [read_sweep_run(write_run(tmp_path / side / "adapter", rank=rank)) for side, rank in (("a", 2), ("b", 4))]
    with pytest.raises(AblationError, match="label 'adapter' is used twice"):
        describe_sweep(runs, "lora_rank")


@pytest.mark.skipif(not (DEMO / "overtrained" / "adapter_config.json").is_file(), reason="demo runs not committed")
def test_demo_runs_as_an_epochs_sweep_change_the_data_too() -> None:
    adapter, overtrained = read_sweep_run(DEMO / "adapter"), read_sweep_run(DEMO / "overtrained")
    assert (adapter.lora_rank, overtrained.lora_rank, overtrained.epochs, overtrained.train_samples) == (8, 8, 10.0, 48)
    sweep = describe_sweep([overtrained, adapter], "epochs")
    assert [run.label for run in sweep.runs] == ["adapter", "overtrained"]
    assert sweep.confounds == ("train_samples differs: 352 (adapter), 48 (overtrained)",)
    with pytest.raises(AblationError, match="lora_rank = 8 in 2 runs"):
        describe_sweep([adapter, overtrained], "lora_rank")


# --- results from a CSV --------------------------------------------------------------------------


def test_records_from_seed_csv(tmp_path: Path) -> None:
    (tmp_path / "ablation.csv").write_text(SEED_CSV)
    records = records_from_csv(tmp_path / "ablation.csv")
    assert list(records.columns) == ["variable", "value", "rouge_l", "bert_score_f1", "judge_total", "train_loss", "val_loss"]
    assert set(records["variable"]) == {"lora_rank", "epochs", "train_samples"}
    assert records.index.name == "line" and records.index[0] == 2
    assert metric_columns(records) == ("rouge_l", "bert_score_f1", "judge_total", "train_loss", "val_loss")
    rouge = curve_from_records(records, "rank", "rouge_l")
    assert [point.value for point in rouge.points] == [4, 8, 16, 32, 64]
    assert (rouge.best.value, rouge.best.mean, rouge.higher_is_better) == (16, 0.481, True)
    val = curve_from_records(records, "lora_rank", "val_loss")
    assert (val.best.value, val.higher_is_better) == (16, False)
    train = curve_from_records(records, "epochs", "train_loss")
    assert train.best.value == 5
    assert curve_from_records(records, "epochs", "rouge_l", higher_is_better=False).best.value == 1


def test_records_with_ci_columns_labels_and_empty_cells(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(
        "variable,value,label,rougeL,ci_low_rougeL,ci_high_rougeL,judge_overall\n"
        "lora_rank,16,r16,0.45,0.40,0.50,\n"
        "\n"
        "lora_rank,8,r8,0.41,0.37,0.46,3.9\n"
    )
    records = records_from_csv(tmp_path / "r.csv")
    assert list(records.index) == [2, 4]
    curve = curve_from_records(records, "lora_rank", "rougeL")
    assert curve.points == (AblationPoint(8.0, 0.41, 0.37, 0.46, None, "r8"), AblationPoint(16.0, 0.45, 0.40, 0.50, None, "r16"))
    judge = curve_from_records(records, "lora_rank", "judge_overall")
    assert [point.value for point in judge.points] == [8.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "no such file"),
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("variable,value,rougeL\n", "a header but no rows"),
        ("variable,rougeL\nlora_rank,0.4\n", 'line 1: no column "value" \\(columns: variable, rougeL\\)'),
        ("variable,value\nlora_rank,8\n", "no metric column"),
        ("variable,value,rougeL\nlora_rank,8,0.4\nlora_rank,16,high\n", "line 3: column \"rougeL\" is 'high', not a number"),
        ("variable,value,rougeL\nlora_rank,,0.4\n", "line 2: column \"value\" is '', not a number"),
        ("variable,value,rougeL\nlora_rank,8,0,41\n", "line 2: 4 cells, the header has 3"),
        ("variable,value,rougeL,ci_low_rougeL\nlora_rank,8,0.4,0.3\n", 'needs a metric column "rougeL" and a "ci_high_rougeL"'),
        ("variable,value,rougeL,ci_low_rougeL,ci_high_rougeL\nlora_rank,8,0.4,0.5,0.3\n", "line 2: ci_low_rougeL = 0.5"),
    ],
    ids=["missing", "empty", "blank", "header-only", "no-value", "no-metric", "text-cell", "empty-value", "comma-decimal",
         "unpaired-ci", "inverted-ci"],
)
def test_broken_csv_errors_name_the_line(tmp_path: Path, text: str | None, expected: str) -> None:
    if text is not None:
        (tmp_path / "broken.csv").write_text(text)
    with pytest.raises(AblationError, match=expected):
        records_from_csv(tmp_path / "broken.csv")


def test_curve_from_records_errors(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("variable,value,rougeL\nlora_rank,8,0.4\nlora_rank,8,0.5\nepochs,1,0.3\n")
    records = records_from_csv(tmp_path / "r.csv")
    with pytest.raises(AblationError, match=r"lora_rank = 8 on 2 rows \(lines 2, 3\)"):
        curve_from_records(records, "lora_rank", "rougeL")
    with pytest.raises(AblationError, match='no metric "bleu"'):
        curve_from_records(records, "epochs", "bleu")
    with pytest.raises(AblationError, match='no rows with variable "train_samples" \\(variables: epochs, lora_rank\\)'):
        curve_from_records(records, "train_samples", "rougeL")


def test_curve_from_records_carries_the_sweeps_confounds(tmp_path: Path) -> None:
    sweep = describe_sweep(rank_sweep(tmp_path, ranks=(4, 8), epochs={4: 1.0}), "lora_rank")
    (tmp_path / "r.csv").write_text("variable,value,rougeL\nlora_rank,4,0.40\nlora_rank,8,0.45\n")
    curve = curve_from_records(records_from_csv(tmp_path / "r.csv"), "lora_rank", "rougeL", sweep=sweep)
    assert curve.confounds == ("epochs differs: 1 (r4), 3 (r8)",)
    assert "confounded: epochs differs" in str(curve)
    (tmp_path / "r.csv").write_text("variable,value,rougeL\nlora_rank,4,0.40\nlora_rank,16,0.45\n")
    with pytest.raises(AblationError, match="do not match"):
        curve_from_records(records_from_csv(tmp_path / "r.csv"), "lora_rank", "rougeL", sweep=sweep)


# --- results from per-sample scores --------------------------------------------------------------


def test_curve_from_scores_bootstraps_each_run_and_finds_the_best(tmp_path: Path) -> None:
    sweep = describe_sweep(rank_sweep(tmp_path), "lora_rank")
    rng = np.random.default_rng(0)
    centres = {"r2": 0.30, "r4": 0.38, "r8": 0.46, "r16": 0.42}
    scores = {label: pd.concat([scores_table({"rougeL": list(np.clip(rng.normal(c, 0.05, 40), 0, 1)),
                                               "eval_loss": list(rng.normal(2 - c, 0.05, 40))}),
                                scores_table({"rougeL": [0.1] * 40}, mode="base")])
              for label, c in centres.items()}
    curve = curve_from_scores(sweep, scores, "rougeL", iters=500)
    assert [point.label for point in curve.points] == ["r2", "r4", "r8", "r16"]
    assert all(point.n == 40 and point.ci_low < point.mean < point.ci_high for point in curve.points)
    assert (curve.best.value, curve.best.label) == (8, "r8")
    assert curve.best.mean == pytest.approx(0.46, abs=0.03)
    assert curve.notes == sweep.notes and curve.confounds == ()
    assert curve_from_scores(sweep, scores, "rougeL", iters=500) == curve  # seeded
    loss = curve_from_scores(sweep, scores, "eval_loss", iters=500)
    assert (loss.higher_is_better, loss.best.label) == (False, "r8")
    assert curve_from_scores(sweep, scores, "rougeL", mode="base", iters=50).best.value == 2  # tie: the cheapest run
    assert str(curve).startswith("ROUGE-L along lora_rank: best 8: 0.4")


def test_curve_from_scores_errors(tmp_path: Path) -> None:
    sweep = describe_sweep(rank_sweep(tmp_path, ranks=(4, 8)), "lora_rank")
    good = scores_table({"rougeL": [0.4, 0.5, 0.6]})
    with pytest.raises(AblationError, match=r"run r8 \(.*\): no table; .*has: r4"):
        curve_from_scores(sweep, {"r4": good}, "rougeL")
    with pytest.raises(AblationError, match='metric "bleu" has no rows \\(modes: finetuned; metrics: rougeL\\)'):
        curve_from_scores(sweep, {"r4": good, "r8": good}, "bleu")
    with pytest.raises(AblationError, match="run r8 was scored on 2 samples and r4 on 3 \\(2 in common\\)"):
        curve_from_scores(sweep, {"r4": good, "r8": good.iloc[:2]}, "rougeL")
    with pytest.raises(AblationError, match="run r8, metric \"rougeL\": .*NaN"):
        curve_from_scores(sweep, {"r4": good, "r8": scores_table({"rougeL": [0.4, np.nan, 0.6]})}, "rougeL")
    with pytest.raises(AblationError, match="repeats a sample_id"):
        curve_from_scores(sweep, {"r4": pd.concat([good, good]), "r8": good}, "rougeL")


@pytest.mark.parametrize(
    ("metric", "higher"),
    [("rougeL", True), ("judge_overall", True), ("eval_loss", False), ("val_loss", False), ("Perplexity", False)],
)
def test_metric_direction_from_its_name(metric: str, higher: bool) -> None:
    assert metric_higher_is_better(metric) is higher


def test_best_breaks_ties_toward_the_smaller_value() -> None:
    points = (AblationPoint(4, 0.5), AblationPoint(8, 0.5), AblationPoint(16, 0.4))
    assert AblationCurve("lora_rank", "rougeL", points).best.value == 4
    assert AblationCurve("lora_rank", "val_loss", points, higher_is_better=False).best.value == 16


# --- the figure ----------------------------------------------------------------------------------


def test_figure_renders_panels_per_scale_with_confounds_and_closes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    (tmp_path / "ablation.csv").write_text(SEED_CSV)
    records = records_from_csv(tmp_path / "ablation.csv")
    sweep = Sweep("lora_rank", (), ("epochs differs: 2 (r4, r8), 3 (r16, r32, r64)",), ("a note",))
    curves = [AblationCurve(c.variable, c.metric, c.points, c.higher_is_better, sweep.confounds, sweep.notes)
              for c in (curve_from_records(records, "lora_rank", metric) for metric in metric_columns(records))]
    before = plt.get_fignums()
    fig = ablation_figure(curves, "lora_rank")
    axes = fig.get_axes()
    assert len(axes) == 3  # ROUGE-L + BERTScore share 0-1; the 1-5 judge alone; both losses together
    assert [len(ax.get_lines()) > 0 for ax in axes] == [True] * 3
    assert axes[0].get_xscale() == "log" and "log2" in axes[0].get_xlabel()
    texts = [text.get_text() for text in fig.texts]
    assert any("Confound: epochs differs" in text and "Note: a note" in text for text in texts)
    assert any("best rouge_l: 0.481\nat lora_rank = 16" == child.get_text() for child in axes[0].texts)
    png = figure_png(fig)
    assert png.startswith(PNG_MAGIC) and plt.get_fignums() == before


def test_figure_with_bootstrap_bands_on_a_linear_axis(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    points = tuple(AblationPoint(e, m, m - 0.05, m + 0.05, 40, f"e{e}") for e, m in ((1, 0.4), (2, 0.5), (3, 0.45)))
    fig = ablation_figure([AblationCurve("epochs", "rougeL", points)], "epochs")
    (ax,) = fig.get_axes()
    assert ax.get_xscale() == "linear" and ax.collections  # the CI band and error bars
    assert [text.get_text() for text in fig.texts] == ["Ablation: ROUGE-L vs epochs trained"]  # nothing under it
    assert figure_png(fig).startswith(PNG_MAGIC) and not plt.fignum_exists(fig.number)
    with pytest.raises(AblationError, match="curves along lora_rank"):
        ablation_figure([AblationCurve("epochs", "rougeL", points)], "lora_rank")


# --- run labels, best vs smallest, the gate -----------------------------------------------------

from tunegate.ablation import ablation_gate, cheapest_checks, run_labels  # noqa: E402
from tunegate.ablation.verdict import AblationResult  # noqa: E402


def test_run_labels_are_the_shortest_unique_suffix(tmp_path: Path) -> None:
    assert run_labels([tmp_path / "r2", tmp_path / "r4"]) == ("r2", "r4")
    nested = [tmp_path / "runs" / name / "adapter" for name in ("r8", "r16")]
    assert run_labels(nested) == ("r8/adapter", "r16/adapter")
    assert run_labels([tmp_path / "a" / "x" / "adapter", tmp_path / "b" / "x" / "adapter"]) == (
        "a/x/adapter", "b/x/adapter")


def sweep_with_scores(tmp_path: Path, by_rank: dict[int, dict[str, list[float]]]) -> tuple:
    sweep = describe_sweep(rank_sweep(tmp_path, tuple(by_rank)), "lora_rank")
    tables = {f"r{rank}": scores_table(values) for rank, values in by_rank.items()}
    metrics = list(next(iter(by_rank.values())))
    curves = tuple(curve_from_scores(sweep, tables, metric, iters=2000) for metric in metrics)
    return sweep, tables, curves


def test_best_run_that_clearly_beats_the_smallest_is_significant(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    low = rng.uniform(0.2, 0.4, 40)
    sweep, tables, curves = sweep_with_scores(tmp_path, {
        2: {"rougeL": list(low), "bertscore": list(low + 0.3)},
        8: {"rougeL": list(low + 0.15), "bertscore": list(low + 0.3 + np.tile([0.03, -0.025], 20))},
    })
    checks = cheapest_checks(curves, tables, iters=2000)
    rouge, bert = checks
    assert rouge.best.value == 8 and rouge.significant and rouge.adjusted_p < 0.01
    assert rouge.comparison.diff == pytest.approx(0.15) and rouge.family_size == 2
    assert bert.best.value == 8 and bert.significant is False  # +0.0025 on a 0.0275 spread: noise, not a gain
    result = AblationResult("lora_rank", curves, checks, sweep, "2 adapters")
    verdict = ablation_gate(result)
    assert verdict.passed and verdict.name == "ablation[lora_rank]"
    assert "ROUGE-L best" in verdict.message and "a significant gain" in verdict.message
    assert rouge.sufficient.value == 8 and bert.sufficient.value == 2
    assert "lora_rank = 8 is the smallest setting within noise of the best on every metric" in verdict.message


def test_the_smallest_setting_within_noise_of_the_best_is_named(tmp_path: Path) -> None:
    """r2 is clearly worse, r4 only a little below r16 (noise at n=40): r4 is enough."""
    low = np.linspace(0.2, 0.5, 40)
    wiggle = np.tile([0.018, -0.02], 20)  # -0.001 on average
    sweep, tables, curves = sweep_with_scores(tmp_path, {
        2: {"rougeL": list(low)}, 4: {"rougeL": list(low + 0.1 + wiggle)}, 16: {"rougeL": list(low + 0.1)},
    })
    (check,) = cheapest_checks(curves, tables, iters=2000)
    assert check.best.value == 16 and check.smallest.value == 2
    assert check.significant and check.family_size == 2  # best vs r2 and best vs r4
    assert check.sufficient.value == 4
    assert "the smallest lora_rank within noise of the best: 4" in str(check)
    verdict = ablation_gate(AblationResult("lora_rank", curves, (check,), sweep, "s"))
    assert "lora_rank = 4 is the smallest setting within noise of the best on every metric" in verdict.message


def test_when_nothing_beats_the_smallest_the_gate_says_it_suffices(tmp_path: Path) -> None:
    same = list(np.linspace(0.2, 0.6, 30))
    jitter = [v + (0.012 if i % 2 else -0.01) for i, v in enumerate(same)]  # +0.001 on average
    sweep, tables, curves = sweep_with_scores(tmp_path, {4: {"rougeL": same}, 16: {"rougeL": jitter}})
    verdict = ablation_gate(AblationResult("lora_rank", curves, cheapest_checks(curves, tables, iters=2000), sweep, "s"))
    assert verdict.passed and "the smallest setting of the sweep is as good as any" in verdict.message


def test_best_at_the_smallest_value_needs_no_test(tmp_path: Path) -> None:
    sweep, tables, curves = sweep_with_scores(tmp_path, {2: {"rougeL": [0.5, 0.6, 0.7]}, 4: {"rougeL": [0.1, 0.2, 0.3]}})
    (check,) = cheapest_checks(curves, tables, iters=2000)
    assert check.comparison is None and check.significant is None
    assert "the smallest value of the sweep" in str(check)


def test_lower_is_better_metrics_are_compared_negated(tmp_path: Path) -> None:
    base = np.linspace(1.0, 2.0, 30)
    sweep, tables, curves = sweep_with_scores(tmp_path, {2: {"val_loss": list(base)}, 8: {"val_loss": list(base - 0.3)}})
    (check,) = cheapest_checks(curves, tables, iters=2000)
    assert check.best.value == 8 and check.significant
    assert "diff -0.300" in str(check)  # printed on the metric's own scale: the loss fell


def test_confounded_sweep_fails_the_gate_with_the_fix(tmp_path: Path) -> None:
    runs = rank_sweep(tmp_path, (4, 8), train_samples={4: 100, 8: 352})
    sweep = describe_sweep(runs, "lora_rank")
    tables = {"r4": scores_table({"rougeL": [0.3, 0.4]}), "r8": scores_table({"rougeL": [0.5, 0.6]})}
    curves = (curve_from_scores(sweep, tables, "rougeL", iters=1000),)
    verdict = ablation_gate(AblationResult("lora_rank", curves, cheapest_checks(curves, tables, iters=1000), sweep, "s"))
    assert not verdict.passed
    assert "confounded: train_samples differs" in verdict.message and "retrain the runs" in verdict.message


def test_csv_results_are_reported_untested(tmp_path: Path) -> None:
    file = tmp_path / "ablation.csv"
    file.write_text(SEED_CSV)
    records = records_from_csv(file)
    curves = (curve_from_records(records, "rank", "rouge_l"),)
    (check,) = cheapest_checks(curves)
    assert check.best.value == 16 and check.comparison is None
    verdict = ablation_gate(AblationResult("lora_rank", curves, (check,), None, str(file)))
    assert verdict.passed and "no per-sample scores: not tested" in verdict.message


def test_the_committed_demo_rank_sweep_is_a_clean_experiment() -> None:
    """fixtures/demo/sweep: four runs of train_adapter.py that differ in the rank (and alpha = 2r) only."""
    dirs = sorted((DEMO / "sweep").glob("r*"))
    sweep = describe_sweep([read_sweep_run(d) for d in dirs], "lora_rank")
    assert sweep.values == (2, 4, 8, 16) and [run.label for run in sweep.runs] == ["r2", "r4", "r8", "r16"]
    assert not sweep.confounds, sweep.confounds
    assert sweep.notes == ("lora_alpha scales with rank: alpha = 2 × r in every run (4 (r2), 8 (r4), 16 (r8), "
                           "32 (r16)), so the scaling alpha/r stays 2: a deliberate choice, not counted as a confound",)
    run = sweep.runs[0]
    assert run.epochs == 2.0 and run.train_samples == 96
    assert run.target_modules == ("k_proj", "o_proj", "q_proj", "v_proj")
