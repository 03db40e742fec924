"""Tests for tunegate.scores: the long score table, with real ROUGE and the bundled MiniLM."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tunegate.cache import DiskCache
from tunegate.data import Sample
from tunegate.inference import Generation
from tunegate import scores
from tunegate.scores import COLUMNS, mode_metric_values, score_mode, wide_means

ROUGE = ["rouge1", "rouge2", "rougeL"]


def sample(sample_id: str, reference: str, lang: str = "en") -> Sample:
    return Sample(id=sample_id, prompt=f"prompt of {sample_id}", reference=reference, lang=lang)


def answer(sample_id: str, text: str, mode: str = "finetuned") -> Generation:
    return Generation(sample_id=sample_id, mode=mode, text=text, finish_reason="stop",
                      prompt_tokens=10, output_tokens=5, latency_s=0.05)


SAMPLES = [
    sample("same", "The cat sat on the mat."),
    sample("disjoint", "quantum tunnels widen"),
    sample("partial", "the cat ran"),
    sample("zh", "猫坐在垫子上", lang="zh"),
]
ANSWERS = ["the cat sat on the mat", "green apples fall", "the cat sat", "猫坐在垫子上"]


def test_score_mode_rouge_gives_one_row_per_sample_and_metric(tmp_path: Path) -> None:
    table = score_mode(SAMPLES, [answer(s.id, a) for s, a in zip(SAMPLES, ANSWERS)], ROUGE, cache_dir=tmp_path)
    assert list(table.columns) == COLUMNS
    assert len(table) == len(SAMPLES) * len(ROUGE)
    assert not table.duplicated(["sample_id", "metric"]).any()
    assert set(table["mode"]) == {"finetuned"}
    value = table.set_index(["sample_id", "metric"])["value"]
    for metric in ROUGE:
        assert value["same", metric] == pytest.approx(1.0)
        assert value["disjoint", metric] == 0.0
        assert value["zh", metric] == pytest.approx(1.0)  # the sample's lang reaches the tokenizer
    # "the cat sat" vs "the cat ran": 2 of 3 unigrams, 1 of 2 bigrams, LCS 2 of 3.
    assert value["partial", "rouge1"] == pytest.approx(2 / 3)
    assert value["partial", "rouge2"] == pytest.approx(1 / 2)
    assert value["partial", "rougeL"] == pytest.approx(2 / 3)
    assert not (tmp_path / "bertscore").exists()  # ROUGE alone loads no BERTScore model


def test_score_mode_bleu_and_chrf_rows(tmp_path: Path) -> None:
    table = score_mode(SAMPLES, [answer(s.id, a) for s, a in zip(SAMPLES, ANSWERS)], ["bleu", "chrf"], cache_dir=tmp_path)
    value = table.set_index(["sample_id", "metric"])["value"]
    assert len(table) == 2 * len(SAMPLES)
    assert value["zh", "bleu"] == pytest.approx(1.0) and value["zh", "chrf"] == pytest.approx(1.0)  # per character
    assert value["disjoint", "bleu"] < 0.05 and value["disjoint", "chrf"] < 0.2
    assert 0 < value["partial", "chrf"] < 1


def test_lexical_scores_are_cached_per_pair_and_read_back_on_a_rerun(tmp_path: Path, monkeypatch) -> None:
    generations = [answer(s.id, a) for s, a in zip(SAMPLES, ANSWERS)]
    first = score_mode(SAMPLES, generations, ["rougeL", "bleu"], cache_dir=tmp_path)
    cache = DiskCache(tmp_path, "lexical")
    assert len(cache) == len(SAMPLES)  # one entry per (prediction, reference, lang), both metrics in it

    # A rerun computes nothing: the metric functions are not called, and the frame is the same.
    def refuse(*args: object) -> None:
        raise AssertionError("a cached pair was scored again")

    monkeypatch.setattr(scores, "rouge_scores", refuse)
    monkeypatch.setattr(scores, "bleu_scores", refuse)
    pd.testing.assert_frame_equal(score_mode(SAMPLES, generations, ["rougeL", "bleu"], cache_dir=tmp_path), first)

    # Only the changed answer is scored; another metric set is another entry.
    monkeypatch.undo()
    scored: list[list[str]] = []
    real = scores.rouge_scores
    monkeypatch.setattr(scores, "rouge_scores", lambda p, r, l: scored.append(list(p)) or real(p, r, l))
    changed = [*generations[:-1], answer("zh", "狗")]
    value = score_mode(SAMPLES, changed, ["rougeL", "bleu"], cache_dir=tmp_path).set_index(["sample_id", "metric"])
    assert scored == [["狗"]] and value.loc[("zh", "rougeL"), "value"] == 0.0
    score_mode(SAMPLES, generations, ["rougeL"], cache_dir=tmp_path)
    assert len(scored) == 2 and len(cache) == 2 * len(SAMPLES) + 1


def test_score_mode_rows_keep_rouge_then_bleu_then_chrf(tmp_path: Path) -> None:
    table = score_mode(SAMPLES[:1], [answer("same", "the cat")], ["chrf", "bleu", "rougeL", "rouge1"],
                       cache_dir=tmp_path)
    assert list(table["metric"]) == ["rougeL", "rouge1", "bleu", "chrf"]


def test_score_mode_keeps_only_the_requested_metrics_and_the_mode(tmp_path: Path) -> None:
    table = score_mode(SAMPLES[:2], [answer(s.id, "x", mode="prompt_eng") for s in SAMPLES[:2]], ["rougeL"],
                       cache_dir=tmp_path)
    assert list(table["metric"]) == ["rougeL", "rougeL"]
    assert list(table["sample_id"]) == ["same", "disjoint"]
    assert set(table["mode"]) == {"prompt_eng"}


def test_score_mode_with_no_generations_is_an_empty_table(tmp_path: Path) -> None:
    table = score_mode([], [], ROUGE, cache_dir=tmp_path)
    assert table.empty and list(table.columns) == COLUMNS
    assert table["value"].dtype == float


def test_score_mode_rejects_misaligned_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 samples but 1 generations"):
        score_mode(SAMPLES[:2], [answer("same", "x")], ROUGE, cache_dir=tmp_path)


@pytest.mark.slow
def test_bertscore_uses_the_bundled_minilm_and_the_disk_cache(tmp_path: Path) -> None:
    samples = SAMPLES[:3]
    answers = ["The cat sat on the mat.", "green apples fall", "the cat sat"]  # first: byte-identical
    generations = [answer(s.id, a) for s, a in zip(samples, answers)]

    first = score_mode(samples, generations, ["bertscore", "rougeL"], cache_dir=tmp_path)
    assert len(first) == 2 * len(samples)
    scores = first[first["metric"] == "bertscore"].set_index("sample_id")["value"]
    assert scores["same"] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 <= scores["disjoint"] < scores["partial"] < scores["same"]

    cache = DiskCache(tmp_path, "bertscore")
    assert len(cache) == len(samples)  # one entry per (prediction, reference) pair

    second = score_mode(samples, generations, ["bertscore", "rougeL"], cache_dir=tmp_path)
    pd.testing.assert_frame_equal(first, second)
    assert len(cache) == len(samples)

    # The second call read the disk cache, not the model: a planted value comes back.
    for entry in cache.directory.glob("*/*.json"):
        cache.put(entry.stem, {"f1": 0.123})
    third = score_mode(samples, generations, ["bertscore"], cache_dir=tmp_path)
    assert list(third["value"]) == [0.123] * len(samples)


def test_a_rerun_with_every_bertscore_pair_cached_does_not_ask_bert_score_for_the_layer(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """default_num_layers imports bert_score (torch, transformers, matplotlib) only to read its layer table."""
    model = tmp_path / "minilm"
    model.mkdir()
    (model / "config.json").write_text('{"num_hidden_layers": 6}')
    (model / "model.safetensors").write_bytes(b"weights")
    asked: list[Path] = []
    monkeypatch.setattr(scores, "default_num_layers", lambda d: asked.append(d) or 6)
    monkeypatch.setattr(scores, "bertscore_f1", lambda p, r, **kw: [0.5] * len(p))
    generations = [answer(s.id, a) for s, a in zip(SAMPLES, ANSWERS)]
    first = score_mode(SAMPLES, generations, ["bertscore"], cache_dir=tmp_path / "cache", bertscore_model=model)
    assert list(first["value"]) == [0.5] * len(SAMPLES) and asked == [model]
    second = score_mode(SAMPLES, generations, ["bertscore"], cache_dir=tmp_path / "cache", bertscore_model=model)
    pd.testing.assert_frame_equal(first, second)
    assert asked == [model]  # remembered
    (model / "config.json").write_text('{"num_hidden_layers": 12}')  # what the choice reads changed: asked again
    score_mode(SAMPLES, generations, ["bertscore"], cache_dir=tmp_path / "cache", bertscore_model=model)
    assert asked == [model, model]


# --- reading the table -----------------------------------------------------------------------


def long_table() -> pd.DataFrame:
    rows = [
        ("b", "finetuned", "rougeL", 0.8), ("a", "finetuned", "rougeL", 0.6), ("c", "finetuned", "rougeL", 0.4),
        ("a", "finetuned", "rouge1", 0.9), ("b", "finetuned", "rouge1", 0.7),
        ("a", "prompt_eng", "rougeL", 0.1), ("b", "prompt_eng", "rougeL", 0.3),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_mode_metric_values_selects_one_cell_sorted_by_sample_id() -> None:
    values = mode_metric_values(long_table(), "finetuned", "rougeL")
    assert list(values.index) == ["a", "b", "c"]
    assert list(values) == [0.6, 0.8, 0.4]
    assert values.name == "value"


def test_mode_metric_values_of_an_absent_pair_is_empty() -> None:
    assert mode_metric_values(long_table(), "base", "rougeL").empty
    assert mode_metric_values(long_table(), "prompt_eng", "rouge1").empty


def test_wide_means_has_metrics_as_rows_and_modes_as_columns() -> None:
    wide = wide_means(long_table())
    assert sorted(wide.index) == ["rouge1", "rougeL"]
    assert sorted(wide.columns) == ["finetuned", "prompt_eng"]
    assert wide.loc["rougeL", "finetuned"] == pytest.approx(0.6)
    assert wide.loc["rouge1", "finetuned"] == pytest.approx(0.8)
    assert wide.loc["rougeL", "prompt_eng"] == pytest.approx(0.2)
    assert pd.isna(wide.loc["rouge1", "prompt_eng"])


def test_wide_means_keeps_the_modes_in_pipeline_order() -> None:
    """Alphabetical order would put finetuned between base and prompt_eng."""
    rows = [("s", mode, "rougeL", value) for mode, value in (("prompt_eng", 0.2), ("finetuned", 0.6), ("base", 0.1))]
    wide = wide_means(pd.DataFrame(rows, columns=COLUMNS))
    assert list(wide.columns) == ["base", "prompt_eng", "finetuned"]
