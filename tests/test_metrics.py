"""Tests for tunegate/metrics.py with the real rouge-score and the bundled MiniLM (no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from tunegate.config import DEFAULT_METRICS, METRICS
from tunegate.errors import MetricError
from tunegate.metrics import (
    ROUGE_METRICS,
    ChineseCharTokenizer,
    bertscore_f1,
    bleu_scores,
    chrf_scores,
    corpus_bleu,
    corpus_chrf,
    default_bertscore_model,
    default_num_layers,
    meteor_available,
    meteor_scores,
    rouge_scores,
)
from tunegate.scores import METRIC_LABELS


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


# --- BLEU and chrF (sacreBLEU) ---------------------------------------------------------------


def test_bleu_identical_is_one_in_english_and_chinese() -> None:
    # "refund approved" has no 3- or 4-grams: only effective order lets it reach 1.0
    assert bleu_scores(["refund approved", "今天天气很好。"], ["refund approved", "今天天气很好。"], ["en", "zh"]) == [
        pytest.approx(1.0), pytest.approx(1.0)]


def test_bleu_disjoint_and_empty_are_zero() -> None:
    scores = bleu_scores(["green apples fall", "", "a b"], ["quantum tunnels widen", "a b", "  "], ["en"] * 3)
    assert scores == [0.0] * 3


def test_bleu_partial_english_matches_hand_computation() -> None:
    # pred: the cat sat on the mat; ref: the cat lay on a mat. Matches 1-grams 4/6, 2-grams 1/5,
    # 3-grams 0/4 and 4-grams 0/3; exp smoothing turns the k-th zero into 1/(2^k * total): 1/8, 1/12.
    # BLEU = (4/6 * 1/5 * 1/8 * 1/12) ** (1/4) = (1/720) ** 0.25, brevity penalty 1 (same length).
    assert bleu_scores(["the cat sat on the mat"], ["the cat lay on a mat"], ["en"]) == [pytest.approx(720 ** -0.25)]


def test_bleu_tokenizes_chinese_per_character() -> None:
    # 天气很差 vs 天气很好, per character: 1-grams 3/4, 2-grams 2/3, 3-grams 1/2, 4-grams 0/1 -> 1/2
    # (exp smoothing); BLEU = (3/4 * 2/3 * 1/2 * 1/2) ** (1/4) = (1/8) ** 0.25. With 13a, each
    # string is one token and the pair shares nothing.
    assert bleu_scores(["天气很差"] * 2, ["天气很好"] * 2, ["zh-CN", "en"]) == [pytest.approx(8 ** -0.25), 0.0]


def test_chrf_identical_is_one_and_disjoint_is_zero() -> None:
    assert chrf_scores(["The cat sat.", "abc", ""], ["The cat sat.", "xyz", "abc"]) == [pytest.approx(1.0), 0.0, 0.0]


def test_chrf_chinese_works_per_character() -> None:
    # Character n-grams of 天气很差 vs 天气很好: P = R = 3/4, 2/3, 1/2, 0/1 for n = 1..4 (no 5- or
    # 6-grams, so those orders are left out); averaged: 23/48, and F-beta of P = R is P itself.
    # Spaces are removed first, so a per-character spacing gives the same score.
    assert chrf_scores(["天气很差", "天 气 很 差"], ["天气很好", "天气很好"]) == [pytest.approx(23 / 48)] * 2


def test_chrf_gives_partial_credit_for_shared_stems() -> None:
    refunded, unrelated = chrf_scores(["refunded", "shipping"], ["refund", "refund"])
    assert 0.5 < refunded < 1.0 and unrelated < 0.1


def test_corpus_bleu_matches_sacrebleu_on_one_language() -> None:
    import sacrebleu

    predictions = ["the cat sat on the mat", "a b c d", "refund approved"]
    references = ["the cat lay on a mat", "a b c e", "your refund was approved"]
    expected = sacrebleu.corpus_bleu(predictions, [references]).score / 100
    assert corpus_bleu(predictions, references, ["en"] * 3) == pytest.approx(expected)
    assert expected != pytest.approx(sum(bleu_scores(predictions, references, ["en"] * 3)) / 3)  # not a mean


def test_corpus_bleu_tokenizes_each_sample_for_its_language() -> None:
    # One Chinese pair: corpus BLEU equals that pair's per-character BLEU (13a would give 0).
    assert corpus_bleu(["天气很差"], ["天气很好"], ["zh"]) == pytest.approx(8 ** -0.25)
    mixed = corpus_bleu(["天气很差", "the cat sat on the mat"], ["天气很好", "the cat lay on a mat"], ["zh", "en"])
    # summed counts: 1-grams 7/10, 2-grams 3/8, 3-grams 1/6, 4-grams 0/4 -> exp-smoothed 1/8
    assert mixed == pytest.approx((7 / 10 * 3 / 8 * 1 / 6 * 1 / 8) ** 0.25)


def test_corpus_chrf_matches_sacrebleu() -> None:
    import sacrebleu

    predictions, references = ["天气很差", "The cat sat."], ["天气很好", "The cat lay."]
    expected = sacrebleu.corpus_chrf(predictions, [references]).score / 100
    assert corpus_chrf(predictions, references) == pytest.approx(expected) and 0 < expected < 1


@pytest.mark.parametrize("corpus", [lambda: corpus_bleu([], [], []), lambda: corpus_chrf([], [])])
def test_corpus_scores_of_nothing_raise(corpus) -> None:
    with pytest.raises(MetricError, match="no answers"):
        corpus()


def test_overlap_metrics_check_alignment() -> None:
    with pytest.raises(MetricError, match="predictions=2, references=1"):
        bleu_scores(["a", "b"], ["a"], ["en", "en"])
    with pytest.raises(MetricError, match=r"predictions\[0\] is NoneType"):
        chrf_scores([None], ["a"])  # type: ignore[list-item]


# --- METEOR ----------------------------------------------------------------------------------


class _Lemma:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


class _Synset:
    def __init__(self, *names: str) -> None:
        self._lemmas = [_Lemma(name) for name in names]

    def lemmas(self) -> list[_Lemma]:
        return self._lemmas


class _TinyWordNet:
    """The one call nltk's METEOR makes on WordNet, over a one-synset table (as real WordNet's
    verb synset of "repay": METEOR looks synonyms up after Porter stemming, "repayment" -> "repay")."""

    def synsets(self, word: str) -> list[_Synset]:
        return [_Synset("repay", "refund")] if word in ("repay", "refund") else []


class _Synonymless:
    def synsets(self, word: str) -> list[_Synset]:
        return []


def test_meteor_credits_wordnet_synonyms_by_hand_computation() -> None:
    # hyp "the repayment was sent" vs ref "the refund was sent". With the synonym: 4 of 4 matched
    # in one chunk -> F = 1, penalty 0.5 * (1/4)^3 -> 0.9921875. Without: 3 matched in 2 chunks
    # -> P = R = F = 3/4, penalty 0.5 * (2/3)^3 = 4/27 -> 0.75 * 23/27.
    with_synonym = meteor_scores(["the repayment was sent"], ["The refund was sent."], ["en"], wordnet=_TinyWordNet())
    assert with_synonym == [pytest.approx(0.9921875)]
    no_synonym = meteor_scores(["the repayment was sent"], ["the refund was sent"], ["en"], wordnet=_Synonymless())
    assert no_synonym == [pytest.approx(0.75 * 23 / 27)]


def test_meteor_chinese_matches_characters_and_empty_is_zero() -> None:
    # 天气很差 vs 天气很好: 3 of 4 characters in one chunk -> F = 3/4, penalty 0.5 * (1/3)^3
    scores = meteor_scores(["天气很差", "", "abc"], ["天气很好", "abc", "  "], ["zh", "en", "en"], wordnet=_TinyWordNet())
    assert scores == [pytest.approx(0.75 * (1 - 0.5 / 27)), 0.0, 0.0]


@pytest.fixture
def nltk_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An NLTK data directory that is the only one NLTK searches, so the machine's own data does not count."""
    import nltk.data

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    return tmp_path


def test_meteor_unavailable_without_wordnet_says_why_and_never_scores_zero(nltk_data: Path) -> None:
    available, reason = meteor_available()
    assert not available
    assert "WordNet" in reason and str(nltk_data) in reason and "nltk.downloader" in reason
    with pytest.raises(MetricError, match="METEOR needs NLTK's WordNet"):
        meteor_scores(["a"], ["a"], ["en"])


def test_meteor_available_needs_a_complete_wordnet_directory(nltk_data: Path) -> None:
    wordnet = nltk_data / "corpora" / "wordnet"
    wordnet.mkdir(parents=True)
    for name in ("index.noun", "data.noun", "index.sense"):  # Debian's wordnet packages: no lexnames
        (wordnet / name).write_text("")
    available, reason = meteor_available()
    assert not available and "lacks lexnames" in reason
    (wordnet / "lexnames").write_text("")
    assert meteor_available() == (True, f"WordNet at {wordnet}")


def test_every_metric_has_a_report_label_and_defaults_are_known() -> None:
    assert set(METRICS) <= set(METRIC_LABELS)
    assert set(DEFAULT_METRICS) <= set(METRICS) and "meteor" not in DEFAULT_METRICS


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
