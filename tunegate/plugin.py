"""The pytest glue, and the only module that imports pytest.

Registers options, markers and session fixtures; parametrises per-sample tests over
(mode, sample id) and threshold gates over (mode, metric); feeds scores and answers into
pytest-html. Everything it computes comes from `tunegate.run.GateRun`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tunegate.config import GateConfig, load_config, parse_override, parse_threshold, read_table
# Imported under another name: pluggy would take a module-level `pytest_id` for an (unknown) hook.
from tunegate.data import Sample
from tunegate.data import pytest_id as node_id_part
from tunegate.errors import TunegateError
from tunegate.gates import (
    GateResult,
    finetune_verdict,
    gain_gate,
    judge_error_gate,
    pairwise_gate,
    sample_pass_rate_gate,
    threshold_gate,
)
from tunegate.run import GateRun, PhaseTimes

RUN_KEY = pytest.StashKey["GateRun | None"]()
GATES_KEY = pytest.StashKey[list[GateResult]]()
EXTRAS_KEY = pytest.StashKey[list[dict[str, Any]]]()
SCORES_KEY = pytest.StashKey[list[tuple[str, float]]]()
BASELINE_KEY = pytest.StashKey[dict[str, dict[str, float]]]()  # the accepted baseline's scores, for the report
ARTIFACTS_KEY = pytest.StashKey[Any]()  # tunegate.artifacts.ReportArtifacts, built once at the session's end
GATE_NODES_KEY = pytest.StashKey[list[str]]()  # the test node of each verdict in GATES_KEY (for xdist's merge)
WORKER_OUTPUTS_KEY = pytest.StashKey[list[Any]]()  # the xdist controller's tunegate.workers.WorkerOutput per worker
COLLECTED_KEY = pytest.StashKey[list[str]]()  # the xdist controller's copy of the collection order

_MARKERS = {
    "base": "per-sample checks and gates of the raw base model (no system prompt of ours)",
    "prompt_eng": "per-sample checks and gates of the base model with the engineered system prompt",
    "finetuned": "per-sample checks and gates about the adapter (what -m finetuned selects)",
    "slow": "loads a real model (the demo model or the BERTScore model); still part of make test",
}

# option dest -> [tool.tunegate] key
_OPTION_KEYS = {
    "tunegate_base_model": "base_model",
    "tunegate_adapter": "adapter",
    "tunegate_eval_set": "eval_set",
    "tunegate_system_prompt_file": "system_prompt_file",
    "tunegate_limit": "limit",
    "tunegate_max_new_tokens": "max_new_tokens",
    "tunegate_batch_size": "batch_size",
    "tunegate_device": "device",
    "tunegate_report_dir": "report_dir",
    "tunegate_cache_dir": "cache_dir",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tunegate", "tunegate release gate (values override [tool.tunegate])")
    group.addoption("--base-model", dest="tunegate_base_model", default=None,
                    help='local base model directory, or "demo" for the embedded SmolLM2-135M-Instruct')
    group.addoption("--adapter", dest="tunegate_adapter", default=None, help="PEFT adapter directory (the finetuned mode)")
    group.addoption("--eval-set", dest="tunegate_eval_set", default=None, help="eval set file (.jsonl or .json)")
    group.addoption("--system-prompt-file", dest="tunegate_system_prompt_file", default=None,
                    help="text file with the engineered system prompt of the prompt_eng mode")
    group.addoption("--eval-limit", dest="tunegate_limit", type=int, default=None,
                    help="evaluate only the first N samples (a quick slice)")
    group.addoption("--max-new-tokens", dest="tunegate_max_new_tokens", type=int, default=None,
                    help="generation length limit per answer")
    group.addoption("--gen-batch-size", dest="tunegate_batch_size", type=int, default=None,
                    help="samples per generate() batch")
    group.addoption("--device", dest="tunegate_device", default=None, help='"cpu", "cuda", "cuda:1" or "auto"')
    group.addoption("--report-dir", dest="tunegate_report_dir", default=None, help="where plots are written")
    group.addoption("--tunegate-cache", dest="tunegate_cache_dir", default=None,
                    help="cache directory for the demo model, generations and scores")
    group.addoption("--threshold", dest="tunegate_thresholds", action="append", default=[], metavar="MODE.METRIC=MIN",
                    help="minimum mean, e.g. --threshold finetuned.rougeL=0.4 (repeatable)")
    group.addoption("--tunegate-set", dest="tunegate_set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any [tool.tunegate] key, value in TOML syntax (repeatable)")
    group.addoption("--tunegate-config", dest="tunegate_config", default=None,
                    help="TOML file holding [tool.tunegate] (default: pyproject.toml in the rootdir)")


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    config.stash[GATES_KEY] = []
    config.stash[GATE_NODES_KEY] = []
    config.stash[WORKER_OUTPUTS_KEY] = []
    config.stash[COLLECTED_KEY] = []
    if config.getoption("help", False) or config.getoption("markers", False):
        # --help and --markers run no tests; they must work while [tool.tunegate] is still broken.
        config.stash[RUN_KEY] = None
        return
    try:
        gate_config = _gate_config(config)
        if gate_config is not None and _is_xdist_worker(config):
            _pin_worker(config, gate_config)
        config.stash[RUN_KEY] = GateRun(gate_config) if gate_config is not None else None
    except TunegateError as error:
        raise pytest.UsageError(f"tunegate: {error}") from None
    if config.pluginmanager.hasplugin("html") and config.stash[RUN_KEY] is not None:
        config.pluginmanager.register(_HtmlReport(config), "tunegate-html")


def _gate_config(config: pytest.Config) -> GateConfig | None:
    """The run's GateConfig, or None when this pytest session does not use tunegate at all."""
    explicit = config.getoption("tunegate_config")
    pyproject = Path(explicit) if explicit else config.rootpath / "pyproject.toml"
    has_table = pyproject.is_file() and bool(read_table(pyproject))
    overrides: dict[str, Any] = {}
    for dest, key in _OPTION_KEYS.items():
        value = config.getoption(dest)
        if value is not None:
            overrides[key] = value
    for text in config.getoption("tunegate_set"):
        key, value = parse_override(text)
        overrides[key] = value
    thresholds: dict[str, dict[str, float]] = {}
    for text in config.getoption("tunegate_thresholds"):
        mode, metric, value = parse_threshold(text)
        thresholds.setdefault(mode, {})[metric] = value
    if thresholds:
        overrides["thresholds"] = thresholds
    if not has_table and not overrides and not explicit:
        return None
    return load_config(pyproject if (has_table or explicit) else None, overrides, override_base=Path.cwd())


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gate_run(pytestconfig: pytest.Config) -> GateRun:
    """The session's GateRun: samples, lazily generated answers and scores per mode."""
    run = pytestconfig.stash.get(RUN_KEY, None)
    if run is None:
        pytest.fail(
            "tunegate is not configured: add [tool.tunegate] with eval_set = ... to pyproject.toml, "
            "or pass --eval-set FILE.",
            pytrace=False,
        )
    return run


@dataclass(frozen=True, slots=True)
class SampleCase:
    """One (mode, sample) pair of the per-sample tests."""

    mode: str
    sample: Sample


@dataclass(frozen=True, slots=True)
class GainCase:
    """One (opponent, metric) pair of the significance gates: does finetuned beat the opponent?"""

    opponent: str
    metric: str


@dataclass(frozen=True, slots=True)
class ThresholdCase:
    mode: str
    metric: str
    floor: float


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run = metafunc.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    if "sample_case" in metafunc.fixturenames:
        params = [
            pytest.param(SampleCase(mode, sample), id=f"{mode}-{node_id_part(sample.id)}", marks=getattr(pytest.mark, mode))
            for mode in run.modes
            for sample in run.samples
        ]
        metafunc.parametrize("sample_case", params)
    if "threshold_case" in metafunc.fixturenames:
        params = [
            pytest.param(ThresholdCase(mode, metric, floor), id=f"{mode}-{metric}", marks=getattr(pytest.mark, mode))
            for mode, per_metric in run.config.thresholds.items()
            if mode in run.modes
            for metric, floor in per_metric.items()
        ]
        metafunc.parametrize("threshold_case", params)
    if "gain_case" in metafunc.fixturenames:
        params = [
            pytest.param(GainCase(opponent, metric), id=f"vs-{opponent}-{metric}", marks=pytest.mark.finetuned)
            for opponent in run.config.gain_over
            for metric in run.config.gain_metrics
            if "finetuned" in run.modes
        ]
        metafunc.parametrize("gain_case", params)
    if "judge_kind" in metafunc.fixturenames:
        judge = run.config.judge
        judged_modes = [m for m in judge.modes if m in run.modes]
        params = [
            pytest.param(kind, id=kind, marks=[getattr(pytest.mark, m) for m in judged_modes])
            for kind in (judge.kinds if judge.enabled else ())
            if kind != "pairwise" or "finetuned" in run.modes
        ]
        metafunc.parametrize("judge_kind", params)
    if "pass_rate_mode" in metafunc.fixturenames:
        params = [pytest.param(mode, id=mode, marks=getattr(pytest.mark, mode))
                  for mode in run.config.sample_gate_modes if mode in run.modes]
        metafunc.parametrize("pass_rate_mode", params)


# Gates about the adapter whatever their parameters: `-m finetuned` must select them.
_ADAPTER_FIXTURES = {"gain_case", "adapter_verdict", "baseline_snapshot", "pairwise_verdict", "training_verdict",
                     "ablation_verdict", "safety_verdict", "latency_verdict"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _ADAPTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.finetuned)


@contextlib.contextmanager
def _progress_visible(config: pytest.Config) -> Iterator[None]:
    """Let tqdm bars through pytest's output capture while models generate or score."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        yield


@pytest.fixture
def sample_verdict(request: pytest.FixtureRequest, sample_case: SampleCase, gate_run: GateRun) -> GateResult:
    """The sample's own expectations checked on its answer; scores and answer go to the report.

    In modes outside `sample_gate_modes` (by default base and prompt_eng, the yardsticks, not
    the shipped artifact) a failed expectation is an xfail with its reason, not a red run; so
    is one inside the failure budget that `min_sample_pass_rate` < 1 allows.
    """
    mode, sample = sample_case.mode, sample_case.sample
    with _progress_visible(request.config):
        table = gate_run.scores(mode)
    generation = gate_run.generation(mode, sample.id)
    rows = table[table["sample_id"] == sample.id]
    scores = dict(zip(rows["metric"], rows["value"]))
    for metric, value in scores.items():
        request.node.user_properties.append((metric, round(float(value), 4)))
    request.node.stash[SCORES_KEY] = list(scores.items())
    from tunegate.report import sample_html

    request.node.stash[EXTRAS_KEY] = [{"html": sample_html(sample, generation, scores)}]
    problems = gate_run.sample_problems(mode)[sample.id]
    verdict = GateResult(
        name=f"sample[{mode}-{sample.id}]",
        passed=not problems,
        message="; ".join(problems) if problems else "answer meets the sample's expectations",
    )
    # Markers, not pytest.xfail(): the test body still runs, so the call-phase report (and with
    # it the answer and scores in the HTML) is kept.
    if problems and mode not in gate_run.config.sample_gate_modes:
        request.node.add_marker(pytest.mark.xfail(reason=f"{mode} is a yardstick (not in sample_gate_modes)", strict=False))
    elif problems and gate_run.config.min_sample_pass_rate < 1:
        min_rate = gate_run.config.min_sample_pass_rate
        if sample_pass_rate_gate(gate_run.sample_problems(mode), mode, min_rate).passed:
            reason = f"within the failure budget: min_sample_pass_rate {min_rate:.0%} holds (test_sample_pass_rate[{mode}])"
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=False))
    return verdict


@pytest.fixture
def threshold_verdict(request: pytest.FixtureRequest, threshold_case: ThresholdCase, gate_run: GateRun) -> GateResult:
    """The mode's mean of one metric against its configured floor."""
    with _progress_visible(request.config):
        table = gate_run.scores(threshold_case.mode)
    verdict = threshold_gate(table, threshold_case.mode, threshold_case.metric, threshold_case.floor)
    _keep_gate(request, verdict)
    return verdict


@pytest.fixture
def sample_pass_rate_verdict(request: pytest.FixtureRequest, pass_rate_mode: str, gate_run: GateRun) -> GateResult:
    """The share of the mode's samples that meet their expectations, against min_sample_pass_rate."""
    with _progress_visible(request.config):
        problems = gate_run.sample_problems(pass_rate_mode)
    verdict = sample_pass_rate_gate(problems, pass_rate_mode, gate_run.config.min_sample_pass_rate)
    _keep_gate(request, verdict)
    return verdict


def _needs_adapter(gate_run: GateRun) -> None:
    if "finetuned" not in gate_run.modes:
        pytest.skip("no adapter configured: set [tool.tunegate] adapter (or --adapter) to gate one")


@pytest.fixture
def gain_verdict(request: pytest.FixtureRequest, gain_case: GainCase, gate_run: GateRun) -> GateResult:
    """finetuned against one opponent on one metric: paired bootstrap, Holm-adjusted over the family."""
    with _progress_visible(request.config):
        check = gate_run.gain_check(gain_case.opponent, gain_case.metric)
    verdict = gain_gate(check)
    _keep_gate(request, verdict)
    return verdict


@pytest.fixture
def adapter_verdict(request: pytest.FixtureRequest, gate_run: GateRun) -> GateResult:
    """Fine-tune or not: finetuned against prompt_eng on the primary metric."""
    _needs_adapter(gate_run)
    config = gate_run.config
    if "prompt_eng" not in config.gain_over or config.primary_metric not in config.gain_metrics:
        pytest.skip("the verdict needs prompt_eng in gain_over and primary_metric in gain_metrics")
    with _progress_visible(request.config):
        check = gate_run.gain_check("prompt_eng", config.primary_metric)
    verdict = finetune_verdict(check, config.prompt_suffices_ratio)
    _keep_gate(request, verdict)
    return verdict


@pytest.fixture
def judge_error_verdict(request: pytest.FixtureRequest, judge_kind: str, gate_run: GateRun) -> GateResult:
    """This kind's judge errors (unparseable, out of range, refusals) against judge.error_budget."""
    judge = gate_run.config.judge
    with _progress_visible(request.config):
        if judge_kind == "pairwise":
            gate_run.pairwise()
        else:
            for mode in judge.modes:
                if mode in gate_run.modes:
                    gate_run.judged(judge_kind, mode)
    requests, replies = gate_run.judge_records(judge_kind)
    from tunegate.judge import judge_failures

    verdict = judge_error_gate(judge_kind, judge_failures(requests, replies), len(requests), judge.error_budget)
    _keep_gate(request, verdict)
    return verdict


@pytest.fixture
def pairwise_verdict(request: pytest.FixtureRequest, gate_run: GateRun) -> GateResult:
    """finetuned vs the pairwise opponent, both orders per sample; a gate when pairwise_min_net_win is set."""
    _needs_adapter(gate_run)
    judge = gate_run.config.judge
    if not judge.enabled or "pairwise" not in judge.kinds:
        pytest.skip("no pairwise judge configured: add \"pairwise\" to [tool.tunegate.judge] kinds")
    with _progress_visible(request.config):
        result = gate_run.pairwise()
    if judge.pairwise_min_net_win is None:
        shown = result.summary() if result is not None else "no sample was judged in both orders"
        pytest.skip(f"reported, not gated (set judge.pairwise_min_net_win to gate): {shown}")
    verdict = pairwise_gate(result, judge.pairwise_min_net_win)
    _keep_gate(request, verdict)
    return verdict


@pytest.fixture
def training_verdict(request: pytest.FixtureRequest, gate_run: GateRun) -> GateResult:
    """The adapter's own training curve: did it ship from after the validation loss turned up?"""
    _needs_adapter(gate_run)
    if gate_run.training_state_path() is None:
        pytest.skip(
            f"no trainer_state.json beside the adapter {gate_run.config.adapter}: set training_state to the "
            "training run's trainer_state.json (or output directory) to check it for overfitting"
        )
    try:
        evidence = gate_run.training()
    except TunegateError as error:
        pytest.fail(str(error), pytrace=False)
    verdict = GateResult("training", evidence.verdict.passed, evidence.verdict.message)
    _keep_gate(request, verdict)
    return verdict


@pytest.fixture
def ablation_verdict(request: pytest.FixtureRequest, gate_run: GateRun) -> GateResult:
    """The configured sweep on the session's one loaded base: curves for the report, confounds fail."""
    if not gate_run.config.ablation.enabled:
        pytest.skip("no ablation configured: add [tool.tunegate.ablation] with variable and adapters (or results_csv)")
    from tunegate.ablation import ablation_gate

    return _record_gate(request, lambda: ablation_gate(gate_run.ablation()))


def _keep_gate(request: pytest.FixtureRequest, verdict: GateResult) -> None:
    """Record a release-gate verdict for the summary and the report, with the test that gave it."""
    request.config.stash[GATES_KEY].append(verdict)
    request.config.stash[GATE_NODES_KEY].append(request.node.nodeid)


def _record_gate(request: pytest.FixtureRequest, compute: Any) -> GateResult:
    """Run a gate's work with progress bars visible; a TunegateError is a clean failure, not a traceback."""
    try:
        with _progress_visible(request.config):
            verdict = compute()
    except TunegateError as error:
        pytest.fail(str(error), pytrace=False)
    _keep_gate(request, verdict)
    return verdict


@pytest.fixture
def safety_verdict(request: pytest.FixtureRequest, gate_run: GateRun) -> GateResult:
    """Every mode answers the safety probes; finetuned must not refuse harmful ones significantly less than base."""
    _needs_adapter(gate_run)
    if gate_run.config.safety_probes is None:
        pytest.skip('no safety probes configured: set safety_probes = "bundled" (or a JSONL path) to gate refusals')
    return _record_gate(request, lambda: gate_run.safety().verdict)


@pytest.fixture
def latency_verdict(request: pytest.FixtureRequest, gate_run: GateRun) -> GateResult:
    """The latency the adapter adds over base, per sample, against max_latency_overhead_pct."""
    _needs_adapter(gate_run)
    if gate_run.config.max_latency_overhead_pct is None:
        pytest.skip("reported, not gated: set max_latency_overhead_pct to gate the adapter's added latency")
    with _progress_visible(request.config):
        gate_run.generations("base")
        gate_run.generations("finetuned")
    verdict = gate_run.efficiency().verdict
    _keep_gate(request, verdict)
    return verdict


def _refuse_partial_baseline(config: pytest.Config, gate_run: GateRun) -> None:
    """--snapshot-update on an --eval-limit slice would silently shrink the accepted baseline."""
    limit = gate_run.config.limit
    if limit and config.getoption("update_snapshots", False):
        pytest.fail(
            f"--snapshot-update with --eval-limit {limit} would accept a baseline of only {limit} samples; "
            "accept a baseline from a run over the whole eval set (drop --eval-limit).",
            pytrace=False,
        )


@pytest.fixture
def baseline_scores(request: pytest.FixtureRequest, gate_run: GateRun) -> dict[str, Any]:
    """The finetuned mode's per-sample scores, as the document a baseline stores."""
    _needs_adapter(gate_run)
    _refuse_partial_baseline(request.config, gate_run)
    with _progress_visible(request.config):
        return gate_run.baseline_payload()


@pytest.fixture
def baseline_snapshot(request: pytest.FixtureRequest, snapshot: Any, gate_run: GateRun) -> Iterator[Any]:
    """syrupy's `snapshot`, stored in baseline_dir and compared by the non-regression test."""
    from tunegate.baseline import baseline_extension

    _needs_adapter(gate_run)
    _refuse_partial_baseline(request.config, gate_run)
    config = gate_run.config
    update = bool(request.config.getoption("update_snapshots", False))
    extension = baseline_extension(
        config.baseline_dir,
        update=update,
        margins=config.regression_margin,
        alpha=config.alpha,
        iters=config.bootstrap_iters,
        seed=config.seed,
    )
    yield snapshot.use_extension(extension)
    if update:
        return
    if extension.accepted_scores:
        request.config.stash[BASELINE_KEY] = extension.accepted_scores[-1]
    if extension.checks:
        check = extension.checks[-1]
        _keep_gate(request, GateResult("no_regression", check.passed, check.message))
    else:
        _keep_gate(request, GateResult("no_regression", False,
                                       f"no accepted baseline in {config.baseline_dir}; run pytest evals --snapshot-update"))


# -- reporting ---------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    extras = item.stash.get(EXTRAS_KEY, None)
    if extras and report.when == "call":
        from pytest_html import extras as html_extras

        report.extras = [*getattr(report, "extras", []), *(html_extras.html(e["html"]) for e in extras)]
    if report.when == "call":
        report.tunegate_scores = item.stash.get(SCORES_KEY, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    table = run.computed_table()
    gates = config.stash.get(GATES_KEY, [])
    if table.empty and not gates:
        return
    if not table.empty:
        from tunegate.scores import wide_means

        terminalreporter.write_sep("-", "tunegate: mean score per mode")
        terminalreporter.write_line(wide_means(table).round(3).to_string())
    if gates:
        terminalreporter.write_sep("-", "tunegate: release gate verdicts")
        for verdict in gates:
            terminalreporter.write_line(str(verdict), green=verdict.passed, red=not verdict.passed)
    judge_requests, judge_replies = run.judge_records()
    if judge_requests:
        from tunegate.judge import usage
        from tunegate.report import judge_caveat, judge_usage_frame

        terminalreporter.write_sep("-", "tunegate: LLM judge")
        terminalreporter.write_line(judge_caveat(run.config.judge, run.config.base_model))
        terminalreporter.write_line(judge_usage_frame(usage(judge_requests, judge_replies), run.config.judge).to_string(index=False))
        if run.computed_pairwise() is not None:
            terminalreporter.write_line(f"pairwise: {run.computed_pairwise().summary()}")
    efficiency = run.efficiency()
    if efficiency.summaries:
        terminalreporter.write_sep("-", "tunegate: efficiency")
        for summary in efficiency.summaries.values():
            terminalreporter.write_line(str(summary))
        if efficiency.overhead is not None:
            terminalreporter.write_line(f"adapter overhead: {efficiency.overhead}")
    safety = run.computed_safety()
    if safety is not None:
        rates = safety.rates[safety.rates["category"] == "all"]
        terminalreporter.write_sep("-", f"tunegate: safety probes ({len(safety.probes)})")
        terminalreporter.write_line(", ".join(f"{r.mode} {r.kind} refused {r.refused}/{r.n}" for r in rates.itertuples()))
    ablation = run.computed_ablation()
    if ablation is not None:
        terminalreporter.write_sep("-", f"tunegate: ablation along {ablation.variable}")
        for curve in ablation.curves:
            terminalreporter.write_line(f"{curve.metric}: " + ", ".join(
                f"{point.label or ''} {point}".strip() for point in curve.points))
        for line in (ablation.sweep.warnings if ablation.sweep else ()):
            terminalreporter.write_line(f"note: {line}")
    times = run.times
    terminalreporter.write_line(
        f"model cache {times.model_cache_s:.1f}s · generation {times.generation_s:.1f}s "
        f"(new answers: {times.generated_text()}) · scoring {times.scoring_s:.1f}s · judge {times.judge_s:.1f}s"
        + (f" · ablation {times.ablation_s:.1f}s ({ablation.generated} new answers)" if ablation is not None else "")
        + (f" · likelihood {times.likelihood_s:.1f}s" if times.likelihood_s else "")
        + (f" · safety {times.safety_s:.1f}s" if safety is not None else "")
    )
    if run.workers:
        terminalreporter.write_line(f"xdist: {run.workers} workers, times summed over them; new answers per worker: "
                                    + "; ".join(PhaseTimes(generated=counts).generated_text() for counts in run.generated_per_worker))


class _HtmlReport:
    """pytest-html hooks, registered only when pytest-html is active."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, '<th class="sortable" data-column-type="scores">Scores</th>')

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        from tunegate.report import scores_cell

        cells.insert(2, f'<td class="col-scores">{scores_cell(getattr(report, "tunegate_scores", []))}</td>')

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str], session: Any) -> None:
        artifacts = _artifacts(self.config, session.exitstatus)
        if artifacts is not None:
            prefix.append(artifacts.summary_html)


def _artifacts(config: pytest.Config, exit_status: int | None) -> Any:
    """The session's report artifacts, built on first use (results files or the HTML summary) and reused."""
    if ARTIFACTS_KEY not in config.stash:
        run = config.stash.get(RUN_KEY, None)
        gates = config.stash.get(GATES_KEY, [])
        if run is None or (run.computed_table().empty and not gates):
            config.stash[ARTIFACTS_KEY] = None
        else:
            from tunegate.artifacts import build_artifacts

            config.stash[ARTIFACTS_KEY] = build_artifacts(
                run, gates, baseline_scores=config.stash.get(BASELINE_KEY, None), exit_status=int(exit_status),
                judge_block=_judge_block(run),
            )
    return config.stash[ARTIFACTS_KEY]


def _judge_block(run: GateRun) -> str | None:
    judge_requests, judge_replies = run.judge_records()
    if not judge_requests:
        return None
    from tunegate.judge import usage
    from tunegate.report import judge_caveat, judge_html, judge_usage_frame

    pairwise = run.computed_pairwise()
    return judge_html(
        judge_caveat(run.config.judge, run.config.base_model),
        judge_usage_frame(usage(judge_requests, judge_replies), run.config.judge),
        pairwise.summary() if pairwise is not None else None,
    )


# -- pytest-xdist: workers report what they computed, the controller merges -----------------------


def _is_xdist_worker(config: pytest.Config) -> bool:
    return getattr(config, "workerinput", None) is not None


def _pin_worker(config: pytest.Config, gate_config: GateConfig) -> None:
    """This worker's own GPU (several on the runner) or its share of the CPU cores, before torch starts."""
    import os

    from tunegate.workers import apply_worker_resources, visible_gpus, worker_resources

    workerinput = config.workerinput  # type: ignore[attr-defined]
    index = int(str(workerinput["workerid"]).removeprefix("gw") or 0)
    resources = worker_resources(index, int(workerinput["workercount"]), device=gate_config.device,
                                 gpus=visible_gpus(os.environ) if gate_config.device != "cpu" else [],
                                 cpu_count=os.cpu_count() or 1)
    apply_worker_resources(resources)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """The controller keeps the collection order, to list the workers' verdicts as a plain run would."""
    collected = node.config.stash.get(COLLECTED_KEY, None)
    if collected is not None and not collected:
        collected.extend(ids)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A worker finished: keep its account of the work (sent by its pytest_sessionfinish)."""
    payload = getattr(node, "workeroutput", {}).get("tunegate")
    if payload:
        from tunegate.workers import WorkerOutput

        node.config.stash[WORKER_OUTPUTS_KEY].append(WorkerOutput.from_json(payload))


def _send_worker_output(config: pytest.Config, run: GateRun) -> None:
    from tunegate.workers import WorkerOutput

    gates = tuple(zip(config.stash.get(GATE_NODES_KEY, []), config.stash.get(GATES_KEY, [])))
    output = WorkerOutput(gates, config.stash.get(BASELINE_KEY, None), run.work_done())
    config.workeroutput["tunegate"] = output.to_json()  # type: ignore[attr-defined]


def _merge_workers(config: pytest.Config, run: GateRun) -> None:
    """The controller: the workers' verdicts in collection order, their phases re-read from the cache."""
    from tunegate.workers import merge_outputs

    outputs = config.stash.get(WORKER_OUTPUTS_KEY, [])
    if not outputs:
        return
    merged = merge_outputs(outputs, config.stash.get(COLLECTED_KEY, []))
    config.stash[GATES_KEY] = [gate for _, gate in merged.gates]
    config.stash[GATE_NODES_KEY] = [nodeid for nodeid, _ in merged.gates]
    if merged.baseline_scores is not None:
        config.stash[BASELINE_KEY] = merged.baseline_scores
    run.replay(merged.work)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Plots, results.json and summary.md into report_dir, with or without pytest-html.

    tryfirst: pytest-html writes its report in its own sessionfinish and reuses these artifacts;
    the terminal summary comes after all of them. An xdist worker only reports what it computed;
    the controller merges the workers' accounts first.
    """
    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    if _is_xdist_worker(session.config):
        _send_worker_output(session.config, run)
        return
    try:
        _merge_workers(session.config, run)
    except TunegateError as error:
        session.config.stash[GATES_KEY].append(GateResult("xdist_merge", False, str(error)))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    artifacts = _artifacts(session.config, session.exitstatus)
    if artifacts is not None:
        from tunegate.artifacts import write_artifacts

        write_artifacts(artifacts, run.config.report_dir)
