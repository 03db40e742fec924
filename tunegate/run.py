"""One evaluation run: eval set -> generations per mode -> score table, each computed lazily, once.

`GateRun` is what the pytest plugin holds for a session, and what a notebook or script uses
directly (`GateRun(load_config(Path("pyproject.toml"))).score_table()`). Work is per mode and on
demand: `pytest -m finetuned` generates and scores only what the selected tests and gates need.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tunegate.ablation import (
    AblationResult,
    cheapest_checks,
    curve_from_records,
    curve_from_scores,
    describe_sweep,
    metric_columns,
    read_sweep_run,
    records_from_csv,
    run_labels,
)
from tunegate.baseline import baseline_payload
from tunegate.config import LIKELIHOOD_METRICS, GateConfig
from tunegate.data import Sample, eval_set_sha256, load_eval_set
from tunegate.efficiency import Efficiency, Overhead, PeakMemory, PeakMemoryMeter, efficiency_summary, latency_gate
from tunegate.efficiency import overhead as adapter_overhead
from tunegate.errors import AblationError, TrainingStateError, TunegateError
from tunegate.gates import GainCheck, GateResult, gain_checks, sample_problems
from tunegate.inference import MODES, Generation, ModelSession, installed_version
from tunegate.judge import (
    JudgeBackend,
    JudgeReply,
    JudgeRequest,
    PairwiseResult,
    build_requests,
    pairwise_result,
    run_judge,
    score_rows,
)
from tunegate.judge_backends import make_judge_backend
from tunegate.overfitting import (
    CheckpointVerdict,
    Divergence,
    LossCurve,
    detect_divergence,
    load_trainer_state,
    shipped_checkpoint_verdict,
)
from tunegate.models import resolve_base_model
from tunegate.scores import empty_table, score_mode
from tunegate.taxonomy import Diagnosis, diagnose


@dataclass(slots=True)
class PhaseTimes:
    """Wall seconds spent per phase, for the report and the issue notes."""

    model_cache_s: float = 0.0
    generation_s: float = 0.0
    scoring_s: float = 0.0
    judge_s: float = 0.0
    ablation_s: float = 0.0  # the sweep's generation and scoring (on the same loaded base)
    likelihood_s: float = 0.0  # teacher-forced reference log-likelihood (loglik, perplexity)
    safety_s: float = 0.0  # the safety probes' generation and refusal detection
    generated: dict[str, int] = field(default_factory=dict)  # fresh generations per mode (0: all cached)

    def generated_text(self) -> str:
        """Fresh answers per mode in mode order, e.g. `base 0, finetuned 50`; `none` before any."""
        return ", ".join(f"{m} {self.generated[m]}" for m in MODES if m in self.generated) or "none"


@dataclass(frozen=True, slots=True)
class SafetyEvidence:
    """The probe set's answers per mode, refusal rows, rates by kind and category, and the gate's verdict."""

    probes: tuple[Sample, ...]
    table: pd.DataFrame  # long rows: refusal_harmful, over_refusal, safety_empty
    rates: pd.DataFrame  # mode, kind, category, refused, n, rate
    verdict: GateResult | None  # None without an adapter (nothing to compare)
    generations: dict[str, list[Generation]]


@dataclass(frozen=True, slots=True)
class EfficiencyEvidence:
    """Per-mode latency, throughput, tokens and memory; the adapter's overhead; the latency gate."""

    summaries: dict[str, Efficiency]
    memory: dict[str, PeakMemory]
    overhead: Overhead | None  # finetuned against base, when both were generated
    verdict: GateResult | None  # None when max_latency_overhead_pct is unset or a mode is missing


@dataclass(frozen=True, slots=True)
class TrainingEvidence:
    """What the training gate and the loss plot need."""

    curve: LossCurve
    divergence: Divergence | None
    verdict: CheckpointVerdict


class GateRun:
    """Samples, generations and scores for one configuration; each mode is computed at most once."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self.samples: list[Sample] = load_eval_set(config.eval_set, field_map=config.field_map, limit=config.limit)
        self.started_at = datetime.now(timezone.utc)
        self.times = PhaseTimes()
        self._session: ModelSession | None = None
        self._generations: dict[str, list[Generation]] = {}
        self._scores: dict[str, pd.DataFrame] = {}
        self._by_id: dict[str, dict[str, Generation]] = {}  # per-mode lookups the per-sample tests share
        self._problems: dict[str, dict[str, list[str]]] = {}
        self._gain_checks: tuple[GainCheck, ...] | None = None
        self._judge_backend: JudgeBackend | None = None
        self._judged: dict[tuple[str, str], tuple[list[JudgeRequest], list[JudgeReply]]] = {}
        self._pairwise: PairwiseResult | None = None
        self._training: TrainingEvidence | None = None
        self._ablation: AblationResult | None = None
        self._safety: SafetyEvidence | None = None
        self._memory: dict[str, PeakMemory] = {}
        self.workers = 0  # pytest-xdist workers whose work this (controller's) run replayed; 0 without -n
        self.generated_per_worker: list[dict[str, int]] = []  # fresh answers per mode, per xdist worker
        self.merge_notes: list[str] = []  # the workers' merge_adapter outcomes (a local run has its session's)

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this configuration can run: finetuned only when an adapter is set."""
        served = self.config.served
        has_adapter = self.config.adapter is not None or (served is not None and served.adapter_model_name)
        return tuple(m for m in MODES if m != "finetuned" or has_adapter)

    @property
    def session(self) -> ModelSession:
        """The local session (one loaded base), or a ServedSession when [tool.tunegate.served] is set."""
        if self._session is None and self.config.served is not None:
            from tunegate.served import ServedSession

            self._session = ServedSession(self.config.served, self.config.adapter, self.config.system_prompts,
                                          self.config.decoding, self.config.cache_dir)
        if self._session is None:
            started = time.perf_counter()
            base_dir = resolve_base_model(self.config.base_model, self.config.cache_dir)
            self.times.model_cache_s += time.perf_counter() - started
            self._session = ModelSession(
                base_dir, self.config.adapter, self.config.system_prompts, self.config.decoding, self.config.cache_dir
            )
        return self._session

    def generations(self, mode: str, *, progress: bool = True) -> list[Generation]:
        """The mode's answers in eval-set order (cached on disk; generated on a miss)."""
        if mode not in self._generations:
            started = time.perf_counter()
            with PeakMemoryMeter() as meter:
                result = self.session.generate(self.samples, mode, progress=progress)
            self._memory[mode] = meter.result
            self.times.generation_s += time.perf_counter() - started
            self.times.generated[mode] = sum(not g.cached for g in result)
            self._generations[mode] = result
        return self._generations[mode]

    def generation(self, mode: str, sample_id: str) -> Generation:
        if mode not in self._by_id:
            self._by_id[mode] = {g.sample_id: g for g in self.generations(mode)}
        return self._by_id[mode][sample_id]

    def sample_problems(self, mode: str) -> dict[str, list[str]]:
        """Each sample's unmet expectations in `mode`, by sample id (an empty list: all met)."""
        if mode not in self._problems:
            pairs = zip(self.samples, self.generations(mode))
            self._problems[mode] = {g.sample_id: sample_problems(s, g) for s, g in pairs}
        return self._problems[mode]

    def scores(self, mode: str) -> pd.DataFrame:
        """The long score rows of one mode: the configured scorers, then the judge's scores."""
        if mode not in self._scores:
            generations = self.generations(mode)
            started = time.perf_counter()
            table = score_mode(
                self.samples,
                generations,
                self.config.metrics,
                cache_dir=self.config.cache_dir,
                bertscore_model=self.config.bertscore_model,
            )
            self.times.scoring_s += time.perf_counter() - started
            if (likelihood := self._likelihood_rows(mode, self.config.metrics)) is not None:
                table = pd.concat([table, likelihood], ignore_index=True)
            judge = self.config.judge
            if judge.enabled and mode in judge.modes:
                rows = [row for kind in judge.kinds if kind != "pairwise" for row in score_rows(*self.judged(kind, mode))]
                table = pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True)
            self._scores[mode] = table
        return self._scores[mode]

    def _likelihood_rows(self, mode: str, metrics: Iterable[str], adapter_dir: Path | None = None) -> pd.DataFrame | None:
        """loglik (mean log-prob per reference token) and/or perplexity rows from the loaded base, for
        whichever of them `metrics` asks for; None when it asks for neither (nothing is computed)."""
        metrics = [m for m in LIKELIHOOD_METRICS if m in metrics]
        if not metrics:
            return None
        started = time.perf_counter()
        found = self.session.reference_likelihoods(self.samples, mode, adapter_dir=adapter_dir)
        values = {"loglik": lambda x: x.mean_logprob, "perplexity": lambda x: x.perplexity}
        rows = [(x.sample_id, mode, metric, float(values[metric](x))) for metric in metrics for x in found]
        self.times.likelihood_s += time.perf_counter() - started
        return pd.DataFrame(rows, columns=empty_table().columns)

    # -- beyond quality: safety probes, efficiency, failure taxonomy --------------------------------

    def safety(self, *, progress: bool = True) -> SafetyEvidence:
        """Every mode answers the safety probes; refusals detected; finetuned against base, paired."""
        if self._safety is None:
            from tunegate.safety import refusal_rates, safety_gate, safety_rows

            config = self.config
            if config.safety_probes is None:
                raise TunegateError("no safety probes configured: set safety_probes = \"bundled\" (or a JSONL path).")
            # A quick --eval-limit slice takes the first N probes too (4 harmful + 4 benign at N=8).
            probes = load_eval_set(config.safety_probes, limit=config.limit)
            started = time.perf_counter()
            answers = {mode: self.session.generate(probes, mode, progress=progress, desc=f"safety probes {mode}")
                       for mode in self.modes}
            table = safety_rows(probes, answers)
            verdict = None
            if "finetuned" in self.modes:
                verdict = safety_gate(table, alpha=config.alpha, iters=config.bootstrap_iters, seed=config.seed,
                                      max_drop=config.safety_max_drop)
            self.times.safety_s += time.perf_counter() - started
            self._safety = SafetyEvidence(tuple(probes), table, refusal_rates(table, probes), verdict, answers)
        return self._safety

    def computed_safety(self) -> SafetyEvidence | None:
        return self._safety

    def efficiency(self) -> EfficiencyEvidence:
        """Latency, throughput, tokens and memory of the modes generated so far (triggers no generation)."""
        # Served answers are timed per request under concurrency, not as a batch's wall time / its size.
        batch = 1 if self.config.served is not None else self.config.batch_size
        generated = self.computed_generations()
        summaries = {mode: efficiency_summary(answers, batch_size=batch) for mode, answers in generated.items() if answers}
        found = None
        verdict = None
        if "base" in summaries and "finetuned" in summaries:
            config = self.config
            found = adapter_overhead(summaries["base"], summaries["finetuned"], iters=config.bootstrap_iters,
                                     seed=config.seed)
            if config.max_latency_overhead_pct is not None:
                verdict = latency_gate(generated["base"], generated["finetuned"],
                                       max_overhead_pct=config.max_latency_overhead_pct, batch_size=batch,
                                       seed=config.seed)
        return EfficiencyEvidence(summaries, dict(self._memory), found, verdict)

    def failures(self) -> list[Diagnosis]:
        """The failure taxonomy over every answer generated so far (each mode with its own system prompt)."""
        found: list[Diagnosis] = []
        for mode, answers in self.computed_generations().items():
            context = [prompt for prompt in (self.config.system_prompts.get(mode),) if prompt]
            found += diagnose(self.samples, answers, context=context)
        return found

    # -- the judge ------------------------------------------------------------------------------

    def judge_backend(self) -> JudgeBackend:
        """The configured judge, built once; a local judge on the base model shares its loaded weights."""
        if self._judge_backend is None:
            self._judge_backend = make_judge_backend(self.config.judge, self)
        return self._judge_backend

    def judged(self, kind: str, mode: str) -> tuple[list[JudgeRequest], list[JudgeReply]]:
        """Requests and replies of one kind for one mode (pairwise: mode is "finetuned-vs-<opponent>")."""
        key = (kind, mode)
        if key not in self._judged:
            if kind == "pairwise":
                opponent = self.config.judge.pairwise_opponent
                answers = {m: [g.text for g in self.generations(m)] for m in ("finetuned", opponent)}
                requests = build_requests(kind, self.samples, answers, opponent=opponent)
            else:
                requests = build_requests(kind, self.samples, {mode: [g.text for g in self.generations(mode)]})
            started = time.perf_counter()
            replies = run_judge(self.judge_backend(), requests, self.config.cache_dir, desc=f"judge {kind} {mode}")
            self.times.judge_s += time.perf_counter() - started
            self._judged[key] = (requests, replies)
        return self._judged[key]

    def pairwise(self) -> PairwiseResult | None:
        """finetuned against the pairwise opponent, both orders per sample (None: nothing judged)."""
        if self._pairwise is None:
            opponent = self.config.judge.pairwise_opponent
            requests, replies = self.judged("pairwise", f"finetuned-vs-{opponent}")
            self._pairwise = pairwise_result(
                requests, replies, opponent=opponent, seed=self.config.seed, iters=self.config.bootstrap_iters
            )
        return self._pairwise

    def training_state_path(self) -> Path | None:
        """The trainer_state.json (or its directory) behind the adapter: configured, or beside the adapter."""
        if self.config.training_state is not None:
            return self.config.training_state
        adapter = self.config.adapter
        if adapter is not None and (adapter / "trainer_state.json").is_file():
            return adapter
        return None

    def training(self) -> TrainingEvidence:
        """The adapter's loss curve, its divergence (if any) and the shipped-checkpoint verdict."""
        if self._training is None:
            path = self.training_state_path()
            if path is None:
                raise TrainingStateError(
                    f"no trainer_state.json beside the adapter {self.config.adapter}: set [tool.tunegate] "
                    "training_state to the run's trainer_state.json or output directory."
                )
            curve = load_trainer_state(path)
            divergence = detect_divergence(curve, patience=self.config.overfit_patience)
            self._training = TrainingEvidence(curve, divergence, shipped_checkpoint_verdict(curve, divergence))
        return self._training

    def ablation(self, *, progress: bool = True) -> AblationResult:
        """The configured sweep evaluated: every adapter's answers from the session's one loaded base
        (each loaded onto it once and switched in), scored with the same metrics on the same samples;
        or the curves of a results CSV. One curve per metric, and the best-vs-smallest tests."""
        if self._ablation is None:
            ablation = self.config.ablation
            if not ablation.enabled:
                raise AblationError("no ablation configured: add [tool.tunegate.ablation] with variable and adapters.")
            config = self.config
            started = time.perf_counter()
            if ablation.results_csv is not None:
                records = records_from_csv(ablation.results_csv)
                metrics = ablation.metrics or metric_columns(records)
                curves = tuple(curve_from_records(records, ablation.variable, m) for m in metrics)
                checks = cheapest_checks(curves)
                self._ablation = AblationResult(ablation.variable, curves, checks, None, str(ablation.results_csv),
                                                time.perf_counter() - started)
                return self._ablation
            labels = run_labels(ablation.adapters)
            sweep = describe_sweep([read_sweep_run(d, label=l) for d, l in zip(ablation.adapters, labels)],
                                   ablation.variable)
            metrics = ablation.metrics or config.metrics
            tables: dict[str, pd.DataFrame] = {}
            costs: dict[str, Efficiency] = {}
            fresh = 0
            for run in sweep.runs:
                answers = self.session.generate(self.samples, "finetuned", adapter_dir=run.adapter_dir,
                                                progress=progress, desc=f"generate {run.label}")
                fresh += sum(not g.cached for g in answers)
                costs[run.label] = efficiency_summary(answers, batch_size=config.batch_size)
                tables[run.label] = score_mode(self.samples, answers, metrics, cache_dir=config.cache_dir,
                                               bertscore_model=config.bertscore_model)
                if (likelihood := self._likelihood_rows("finetuned", metrics, run.adapter_dir)) is not None:
                    tables[run.label] = pd.concat([tables[run.label], likelihood], ignore_index=True)
            curves = tuple(curve_from_scores(sweep, tables, m, iters=config.bootstrap_iters, seed=config.seed)
                           for m in metrics)
            checks = cheapest_checks(curves, tables, alpha=config.alpha, iters=config.bootstrap_iters, seed=config.seed)
            seconds = time.perf_counter() - started
            self.times.ablation_s += seconds
            source = f"{len(sweep.runs)} adapters on one loaded base, {len(self.samples)} samples each"
            self._ablation = AblationResult(ablation.variable, curves, checks, sweep, source, seconds, fresh, tables, costs)
        return self._ablation

    def _ablation_text(self) -> str | None:
        ablation = self.config.ablation
        if not ablation.enabled:
            return None
        if ablation.results_csv is not None:
            return f"{ablation.variable} from {ablation.results_csv}"
        return f"{ablation.variable}: {', '.join(run_labels(ablation.adapters))}"

    def computed_ablation(self) -> AblationResult | None:
        return self._ablation

    def computed_training(self) -> TrainingEvidence | None:
        return self._training

    def computed_pairwise(self) -> PairwiseResult | None:
        """The pairwise result if this session computed it (never triggers work): for the report."""
        return self._pairwise

    def judge_records(self, kind: str | None = None) -> tuple[list[JudgeRequest], list[JudgeReply]]:
        """Every judgement made or read so far this session (of one kind, or all)."""
        requests: list[JudgeRequest] = []
        replies: list[JudgeReply] = []
        for (judged_kind, _), (qs, rs) in self._judged.items():
            if kind is None or judged_kind == kind:
                requests += qs
                replies += rs
        return requests, replies

    def score_table(self, modes: Iterable[str] | None = None) -> pd.DataFrame:
        """The long table over `modes` (default: every mode this configuration can run)."""
        frames = [self.scores(mode) for mode in (modes or self.modes)]
        return pd.concat(frames, ignore_index=True) if frames else empty_table()

    def gain_checks(self) -> tuple[GainCheck, ...]:
        """finetuned against each `gain_over` mode on each gain metric, Holm-adjusted as one family."""
        if self._gain_checks is None:
            config = self.config
            table = self.score_table(("finetuned", *config.gain_over))
            self._gain_checks = gain_checks(
                table,
                config.gain_metrics,
                config.gain_over,
                alpha=config.alpha,
                iters=config.bootstrap_iters,
                seed=config.seed,
                min_gain=config.min_gain,
            )
        return self._gain_checks

    def computed_gain_checks(self) -> tuple[GainCheck, ...] | None:
        """The gain checks if a gate computed them this session (never triggers work): for the report."""
        return self._gain_checks

    def gain_check(self, opponent: str, metric: str) -> GainCheck:
        return next(c for c in self.gain_checks() if c.opponent == opponent and c.metric == metric)

    def baseline_payload(self) -> dict[str, Any]:
        """The finetuned mode's per-sample scores as a baseline document (what --snapshot-update stores)."""
        table = self.score_table(("finetuned",))
        session = self.session
        adapter = session.adapter_identity
        accepted = {
            "adapter_sha256": adapter.sha256[:16] if adapter else None,
            "base_model": (self.config.served.base_model_name if self.config.served is not None
                           else self.config.base_model if self.config.base_model == "demo"
                           else Path(self.config.base_model).name),
            "eval_set_sha256": eval_set_sha256(self.config.eval_set)[:16],
        }
        return baseline_payload(table, self.config.regression_metrics, accepted)

    def computed_table(self) -> pd.DataFrame:
        """Only what was already scored this session (never triggers work): for the report."""
        frames = [self._scores[m] for m in MODES if m in self._scores]
        return pd.concat(frames, ignore_index=True) if frames else empty_table()

    def computed_generations(self) -> dict[str, list[Generation]]:
        return {m: self._generations[m] for m in MODES if m in self._generations}

    # -- pytest-xdist: a worker's account of its work, the controller's replay from the cache -----------

    def work_done(self) -> dict[str, Any]:
        """The phases this session computed and what they cost, JSON-safe (a worker sends it; see
        `tunegate.workers`). Says what to re-read, not the results: the cache holds those."""
        times = {name: value for name, value in asdict(self.times).items() if name != "generated"}
        return {
            "generations": list(self._generations),
            "scores": list(self._scores),
            "judged": [list(key) for key in self._judged],
            "pairwise": self._pairwise is not None,
            "gain_checks": self._gain_checks is not None,
            "training": self._training is not None,
            "ablation": self._ablation is not None,
            "safety": self._safety is not None,
            "times": times,
            "generated": dict(self.times.generated),
            "fresh": {mode: [g.sample_id for g in answers if not g.cached] for mode, answers in self._generations.items()},
            "memory": {mode: asdict(memory) for mode, memory in self._memory.items() if memory is not None},
            "ablation_generated": self._ablation.generated if self._ablation is not None else 0,
            "merge_outcomes": [str(o) for o in getattr(self._session, "merge_outcomes", [])],
        }

    def replay(self, work: dict[str, Any]) -> None:
        """Recompute, from the cache alone, the phases the workers ran (the xdist controller's view).

        Loading a model here would mean a result the workers computed is not in the cache: that is an
        error (ModelError), not a silent second run. Timings, fresh-answer counts and peak memory are
        the workers' (summed), since re-reading costs none of them.
        """
        session = self.session
        if isinstance(session, ModelSession):
            session.may_load = False
        fresh = work.get("fresh", {})
        for mode in work.get("generations", []):
            # A worker generated these this run: the efficiency section times them as this run's.
            made = set(fresh.get(mode, []))
            self._generations[mode] = [replace(g, cached=g.sample_id not in made) for g in self.generations(mode, progress=False)]
        for mode in work.get("scores", []):
            self.scores(mode)
        for kind, mode in work.get("judged", []):
            self.judged(kind, mode)
        if work.get("pairwise"):
            self.pairwise()
        if work.get("gain_checks"):
            self.gain_checks()
        if work.get("training"):
            self.training()
        if work.get("ablation"):
            self.ablation(progress=False)
            self._ablation = replace(self._ablation, generated=work.get("ablation_generated", 0),
                                     seconds=work.get("times", {}).get("ablation_s", self._ablation.seconds))
        if work.get("safety"):
            self.safety(progress=False)
        self.times = PhaseTimes(**work.get("times", {}), generated=dict(work.get("generated", {})))
        self._memory = {mode: PeakMemory(**memory) for mode, memory in work.get("memory", {}).items()}
        self.workers = int(work.get("workers", 0))
        self.generated_per_worker = [dict(counts) for counts in work.get("generated_per_worker", [])]
        self.merge_notes = list(work.get("merge_outcomes", []))

    def provenance(self) -> dict[str, Any]:
        """What was evaluated, for the report header: models, hashes, decoding, versions.

        Versions come from the installed distributions' metadata: a report of a fully cached run
        never imports torch just to print its version.
        """
        import platform

        from tunegate import __version__

        info: dict[str, Any] = {
            "base_model": self.config.base_model,
            "eval_set": str(self.config.eval_set),
            "eval_set_sha256": eval_set_sha256(self.config.eval_set)[:16],
            "samples": len(self.samples),
            "adapter": str(self.config.adapter) if self.config.adapter else None,
            "max_new_tokens": self.config.max_new_tokens,
            "decoding": (f"greedy, max_new_tokens {self.config.max_new_tokens}, repetition_penalty "
                         f"{self.config.repetition_penalty:g}, batch {self.config.batch_size}"),
            "statistics": (f"paired bootstrap, {self.config.bootstrap_iters} resamples, seed {self.config.seed}, "
                           f"alpha {self.config.alpha:g}, Holm"),
            "metrics": ", ".join(self.config.metrics),
            "judge": (f"{self.config.judge.backend}: {self.config.judge.model} ({', '.join(self.config.judge.kinds)})"
                      if self.config.judge.enabled else None),
            "training_state": str(training_state) if (training_state := self.training_state_path()) else None,
            "ablation": self._ablation_text(),
            "tunegate": __version__,
            "torch": installed_version("torch"),
            "transformers": installed_version("transformers"),
            "peft": installed_version("peft"),
            "pytest_html": installed_version("pytest-html"),
            "python": platform.python_version(),
            "started_at": self.started_at.isoformat(timespec="seconds"),
        }
        if self._session is not None and self.config.served is not None:
            info.update(self._session.provenance())
        elif self._session is not None:
            info["base_model_sha256"] = self._session.base_identity.sha256[:16]
            if self._session.adapter_identity is not None:
                info["adapter_sha256"] = self._session.adapter_identity.sha256[:16]
            info["device"] = f"{self._session.device} / {self._session.dtype}"
        if self.workers:
            info["xdist_workers"] = self.workers
        merges = self.merge_notes or [str(o) for o in getattr(self._session, "merge_outcomes", [])]
        if merges:
            info["adapter_weights"] = "; ".join(dict.fromkeys(merges))
        return info
