"""The score table: one long pandas frame, `sample_id, mode, metric, value`.

Gates, plots and the report all read this frame; nothing downstream recomputes a score.
BERTScore values are cached on disk per (scoring model, prediction, reference), so a rerun with
unchanged answers loads no scoring model at all, nor imports bert_score (which imports torch,
transformers and matplotlib: about 3 s) to choose the layer. ROUGE, BLEU and chrF are cheap to
compute but not to import (rouge-score imports nltk, which imports scipy: about 1.5 s), so they are
cached per (prediction, reference, lang) too. METEOR is recomputed (it reads WordNet data whose
version nothing records).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tunegate.cache import DiskCache, file_sha256, fingerprint
from tunegate.data import Sample
from tunegate.inference import Generation, installed_version
from tunegate.metrics import (
    ROUGE_METRICS,
    bertscore_f1,
    bleu_scores,
    chrf_scores,
    default_bertscore_model,
    default_num_layers,
    meteor_scores,
    rouge_scores,
)
from tunegate.models import model_identity

COLUMNS = ["sample_id", "mode", "metric", "value"]
LEXICAL_METRICS = (*ROUGE_METRICS, "bleu", "chrf")  # computed together, cached per pair (see the module doc)
# Bump when tunegate.metrics changes how one of LEXICAL_METRICS is computed: cached values then miss.
_LEXICAL_VERSION = "lexical/v1"
METRIC_LABELS = {
    "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bertscore": "BERTScore F1",
    "bleu": "BLEU", "chrf": "chrF", "meteor": "METEOR",
    "loglik": "Ref. log-likelihood", "perplexity": "Ref. perplexity",
    "refusal_harmful": "Refusal (harmful probes)", "over_refusal": "Over-refusal (benign probes)",
    "safety_empty": "Empty answer (probes)",
    **{f"{prefix}_{d}": f"{title} {d}" for prefix, title in (("judge", "Judge"), ("blind", "Blind judge"))
       for d in ("accuracy", "completeness", "conciseness", "overall")},
}


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({"sample_id": pd.Series(dtype=str), "mode": pd.Series(dtype=str),
                         "metric": pd.Series(dtype=str), "value": pd.Series(dtype=float)})


def score_mode(
    samples: Sequence[Sample],
    generations: Sequence[Generation],
    metrics: Sequence[str],
    *,
    cache_dir: str | Path,
    bertscore_model: str | Path | None = None,
) -> pd.DataFrame:
    """Every metric for every sample of one mode, as rows of the long table.

    Args:
        samples: the eval samples, aligned with `generations`.
        generations: one mode's answers, in the samples' order.
        metrics: names from `tunegate.config.METRICS`.
        cache_dir: the root of the on-disk cache (BERTScore and ROUGE/BLEU/chrF values live under it).
        bertscore_model: a local BERT-style model directory; None for the bundled MiniLM.
    """
    if len(samples) != len(generations):
        raise ValueError(f"{len(samples)} samples but {len(generations)} generations")
    if not generations:
        return empty_table()
    mode = generations[0].mode
    for sample, generation in zip(samples, generations):
        if generation.sample_id != sample.id or generation.mode != mode:
            raise ValueError(f"generation {generation.mode}/{generation.sample_id} is not aligned with sample {sample.id}")
    predictions = [g.text for g in generations]
    references = [s.reference for s in samples]
    langs = [s.lang for s in samples]
    lexical = cached_lexical_scores(predictions, references, langs, [m for m in metrics if m in LEXICAL_METRICS],
                                    cache_dir)
    per_metric: dict[str, list[float]] = {m: lexical[m] for m in metrics if m in ROUGE_METRICS}
    per_metric.update((m, lexical[m]) for m in ("bleu", "chrf") if m in lexical)
    if "meteor" in metrics:
        per_metric["meteor"] = meteor_scores(predictions, references, langs)
    if "bertscore" in metrics:
        per_metric["bertscore"] = cached_bertscore(predictions, references, cache_dir, bertscore_model)
    rows = [
        (sample.id, mode, metric, float(values[i]))
        for metric, values in per_metric.items()
        for i, sample in enumerate(samples)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def cached_lexical_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    langs: Sequence[str],
    metrics: Sequence[str],
    cache_dir: str | Path,
) -> dict[str, list[float]]:
    """ROUGE-1/2/L, BLEU and chrF (those of `metrics` asked for) per pair, computing only the pairs not on disk.

    One entry per (prediction, reference, lang) holds every asked metric; its key names the metrics and
    the rouge-score and sacreBLEU versions, so another metric set or library version recomputes.
    """
    wanted = [m for m in LEXICAL_METRICS if m in metrics]
    if not wanted:
        return {}
    cache = DiskCache(cache_dir, "lexical")
    versions = {name: installed_version(name) for name in ("rouge-score", "sacrebleu")}  # metadata: nothing imported
    keys = [fingerprint(_LEXICAL_VERSION, versions, wanted, p, r, lang)
            for p, r, lang in zip(predictions, references, langs)]
    found = cache.get_many(keys)
    missing = [i for i, key in enumerate(keys) if key not in found or any(m not in found[key] for m in wanted)]
    if missing:
        computed = _lexical_scores([predictions[i] for i in missing], [references[i] for i in missing],
                                   [langs[i] for i in missing], wanted)
        for row, i in enumerate(missing):
            found[keys[i]] = {m: float(computed[m][row]) for m in wanted}
            cache.put(keys[i], found[keys[i]])
    return {m: [float(found[key][m]) for key in keys] for m in wanted}


def _lexical_scores(
    predictions: Sequence[str], references: Sequence[str], langs: Sequence[str], metrics: Sequence[str]
) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {}
    if any(m in ROUGE_METRICS for m in metrics):
        scores.update(rouge_scores(predictions, references, langs))
    if "bleu" in metrics:
        scores["bleu"] = bleu_scores(predictions, references, langs)
    if "chrf" in metrics:
        scores["chrf"] = chrf_scores(predictions, references)
    return scores


def cached_bertscore(
    predictions: Sequence[str],
    references: Sequence[str],
    cache_dir: str | Path,
    model_dir: str | Path | None = None,
) -> list[float]:
    """BERTScore F1 per pair, computing only the pairs not already on disk (in one batch)."""
    model_dir = Path(model_dir) if model_dir is not None else default_bertscore_model()
    hashes = DiskCache(cache_dir, "file_hashes")
    num_layers = _bertscore_layers(model_dir, hashes, DiskCache(cache_dir, "bertscore_layers"))
    identity = model_identity(model_dir, hashes).sha256
    cache = DiskCache(cache_dir, "bertscore")
    keys = [fingerprint("bertscore/v1", identity, num_layers, p, r) for p, r in zip(predictions, references)]
    found = cache.get_many(keys)
    missing = [i for i, key in enumerate(keys) if key not in found]
    if missing:
        computed = bertscore_f1(
            [predictions[i] for i in missing], [references[i] for i in missing], model_dir=model_dir, num_layers=num_layers
        )
        for i, value in zip(missing, computed):
            found[keys[i]] = {"f1": float(value)}
            cache.put(keys[i], found[keys[i]])
    return [float(found[key]["f1"]) for key in keys]


def _bertscore_layers(model_dir: Path, hashes: DiskCache, memo: DiskCache) -> int:
    """`default_num_layers(model_dir)`, remembered on disk: it imports bert_score only to read its layer table.

    Keyed by everything `default_num_layers` reads (config.json's bytes, the directory's name, whether
    modules.json exists) and the bert-score version (its table); bump the tag when that function
    starts reading something else.
    """
    if not (model_dir / "config.json").is_file():
        return default_num_layers(model_dir)  # its MetricError names the directory and the fix
    version = {"bert-score": installed_version("bert-score")}
    key = fingerprint("bertscore_layers/v1", version, file_sha256(model_dir / "config.json", hashes),
                      model_dir.name, (model_dir / "modules.json").is_file())
    if (entry := memo.get(key)) is not None and isinstance(entry.get("num_layers"), int):
        return entry["num_layers"]
    num_layers = default_num_layers(model_dir)
    memo.put(key, {"num_layers": num_layers, "model_dir": str(model_dir)})
    return num_layers


def mode_metric_values(table: pd.DataFrame, mode: str, metric: str) -> pd.Series:
    """Per-sample values of one metric in one mode, indexed by sample_id (sorted, for pairing)."""
    rows = table[(table["mode"] == mode) & (table["metric"] == metric)]
    return rows.set_index("sample_id")["value"].sort_index()


def wide_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric (rows, in first-seen order) per mode (columns in MODES order), for summaries.

    pivot_table sorts both axes alphabetically, which puts finetuned between base and prompt_eng:
    easy to misread, so the order is restored.
    """
    from tunegate.inference import MODES

    wide = table.pivot_table(index="metric", columns="mode", values="value", aggfunc="mean")
    modes = [m for m in MODES if m in wide.columns] + [m for m in wide.columns if m not in MODES]
    return wide.reindex(index=list(dict.fromkeys(table["metric"])), columns=modes)
