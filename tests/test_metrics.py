"""Tests for tunegate/metrics.py with the real rouge-score and the bundled MiniLM (no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from tunegate.errors import MetricError
from tunegate.metrics import (
    ROUGE_METRICS,
    ChineseCharTokenizer,
    bertscore_f1,
    default_bertscore_model,
    default_num_layers,
    rouge_scores,
)


def _rouge_one(prediction: str, reference: str, lang: str = "en") -> dict[str, float]:
    scores = rouge_scores([prediction], [reference], [lang])
    return {name: values[0] for name, values in scores.items()}


# --- ROUGE, English --------------------------------------------------------------------------


def test_rouge_identical_english_is_one() -> None:
    assert _rouge_one("The cat sat on the mat.", "the cat sat on the mat") == {
        name: pytest.approx(1.0) for name in ROUGE_METRICS
    }


def test_rouge_disjoint_english_is_zero() -> None:
    assert _rouge_one("green apples fall", "quantum tunnels widen") == {
        name: 0.0 for name in ROUGE_METRICS
    }


def test_rouge_partial_english_matches_hand_computation() -> None:
    # pred: the cat sat on the mat (6 tokens); ref: the cat lay on a mat (6 tokens)
    # ROUGE-1: clipped overlap the(1) cat on mat = 4 -> P = R = 4/6 -> F1 = 2/3
    # ROUGE-2: bigrams 5 each, shared only "the cat" -> P = R = 1/5 -> F1 = 0.2
    # ROUGE-L: LCS "the cat on mat" = 4 -> F1 = 2/3
    scores = _rouge_one("the cat sat on the mat", "the cat lay on a mat")
    assert scores == {
        "rouge1": pytest.approx(2 / 3),
        "rouge2": pytest.approx(0.2),
        "rougeL": pytest.approx(2 / 3),
    }


def test_rouge_empty_prediction_is_zero() -> None:
    assert _rouge_one("   ", "the cat sat") == {name: 0.0 for name in ROUGE_METRICS}


def test_rouge_is_per_sample_and_aligned() -> None:
    scores = rouge_scores(["a b", "x y", "天气"], ["a b", "p q", "天气"], ["en", "en", "zh"])
    assert scores["rouge1"] == [pytest.approx(1.0), 0.0, pytest.approx(1.0)]


# --- ROUGE, Chinese --------------------------------------------------------------------------


def test_rouge_identical_chinese_is_one_where_default_tokenizer_gives_zero() -> None:
    text = "今天天气很好，适合出门。"
    naive = rouge_scorer.RougeScorer(["rouge1"]).score(text, text)["rouge1"].fmeasure
    assert naive == 0.0  # the bug we avoid: [a-z0-9]-only tokenizer empties Chinese text
    assert _rouge_one(text, text, "zh") == {name: pytest.approx(1.0) for name in ROUGE_METRICS}


def test_rouge_chinese_partial_matches_hand_computation() -> None:
    # pred 天气很好 (4 chars); ref 今天天气很好。 (6 chars, 。 dropped)
    # overlap 天 气 很 好 = 4 -> P = 4/4, R = 4/6 -> F1 = 2 * 1 * (2/3) / (5/3) = 0.8
    scores = _rouge_one("天气很好", "今天天气很好。", "zh-CN")
    assert scores["rouge1"] == pytest.approx(0.8)


def test_chinese_tokenizer_handles_mixed_latin_and_digits() -> None:
    assert ChineseCharTokenizer().tokenize("订单 A1234 已于3月5日发货！ＯＫ") == [
        "订", "单", "a1234", "已", "于", "3", "月", "5", "日", "发", "货", "ok",
    ]  # fmt: skip


def test_rouge_mismatched_lengths_raise_metric_error() -> None:
    with pytest.raises(MetricError, match="predictions=2, references=1, langs=2"):
        rouge_scores(["a", "b"], ["a"], ["en", "en"])


def test_rouge_non_string_prediction_raises_metric_error() -> None:
    with pytest.raises(MetricError, match=r"predictions\[0\] is NoneType"):
        rouge_scores([None], ["a"], ["en"])  # type: ignore[list-item]


# --- BERTScore: inputs and configuration (no model load) -------------------------------------


def test_bertscore_mismatched_lengths_raise_metric_error() -> None:
    with pytest.raises(MetricError, match="predictions=1, references=2"):
        bertscore_f1(["a"], ["a", "b"])


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "no-config-json"])
def test_bertscore_bad_model_dir_raises_metric_error(tmp_path: Path, make_dir: bool) -> None:
    model_dir = tmp_path / "my-bert"
    if make_dir:
        model_dir.mkdir()
    with pytest.raises(MetricError, match="bertscore_model") as excinfo:
        bertscore_f1(["a"], ["a"], model_dir=model_dir)
    assert str(model_dir) in str(excinfo.value)


def test_default_model_is_the_bundled_minilm_using_its_last_layer() -> None:
    model_dir = default_bertscore_model()
    assert (model_dir / "config.json").is_file()
    assert default_num_layers(model_dir) == 6  # sentence-transformers model: last layer


@pytest.mark.parametrize(
    ("dir_name", "layers", "expected"),
    [("my-bert", 12, 9), ("my-bert", 6, 5), ("bert-base-chinese", 12, 8)],
)
def test_default_num_layers_for_other_models(
    tmp_path: Path, dir_name: str, layers: int, expected: int
) -> None:
    model_dir = tmp_path / dir_name
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"num_hidden_layers": layers}))
    assert default_num_layers(model_dir) == expected


# --- BERTScore with the real MiniLM ----------------------------------------------------------

PAIRS = [
    ("Your order shipped on March 5.", "Your order shipped on March 5."),
    ("The package was dispatched on the 5th of March.", "Your order shipped on March 5."),
    ("I enjoy eating apples in the garden.", "Your order shipped on March 5."),
    ("", "Your order shipped on March 5."),
    ("You can change your password in settings.", "Reset your password from the settings page."),
    ("   ", "Reset your password from the settings page."),
]


@pytest.fixture(scope="module")
def batch_f1() -> list[float]:
    return bertscore_f1([p for p, _ in PAIRS], [r for _, r in PAIRS], device="cpu")


@pytest.mark.slow
def test_bertscore_identical_is_near_one(batch_f1: list[float]) -> None:
    assert batch_f1[0] > 0.99


@pytest.mark.slow
def test_bertscore_paraphrase_beats_unrelated(batch_f1: list[float]) -> None:
    assert batch_f1[1] > batch_f1[2] + 0.2


@pytest.mark.slow
def test_bertscore_empty_prediction_is_zero_and_rest_still_scored(batch_f1: list[float]) -> None:
    assert batch_f1[3] == 0.0 and batch_f1[5] == 0.0
    assert batch_f1[4] > 0.5


@pytest.mark.slow
def test_bertscore_batch_equals_per_pair_calls(batch_f1: list[float]) -> None:
    single = [bertscore_f1([p], [r], device="cpu")[0] for p, r in PAIRS]
    assert single == pytest.approx(batch_f1, abs=1e-4)


@pytest.mark.slow
def test_bertscore_model_load_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    # num_layers=4 is a configuration no other test uses, so this call really loads the model.
    bertscore_f1(["a short test"], ["a short test"], num_layers=4, device="cpu")
    assert capfd.readouterr() == ("", "")
