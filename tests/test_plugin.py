"""Tests for tunegate.plugin: inner pytest runs (pytester) that collect, select and fail cleanly.

Nothing here generates with a model: parametrisation is checked with --collect-only, and the
end-to-end run of the demo model lives elsewhere.
"""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

SAMPLE_IDS = ["refund_window_001", "q2", "shipping time/EU 2"]
SAMPLES_TEST = """
def test_sample(sample_verdict):
    assert sample_verdict.passed, sample_verdict.message
"""
GATES_TEST = """
def test_threshold(threshold_verdict):
    assert threshold_verdict.passed, threshold_verdict.message
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with its own pytest.ini (rootdir), an eval set, an adapter dir and evals-like tests."""
    (pytester.path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    records = [{"id": i, "prompt": f"Question {n}?", "reference": f"Answer {n}."} for n, i in enumerate(SAMPLE_IDS)]
    (pytester.path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    adapter = pytester.path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    # Names unlike the repo's own test modules: in-process runs share sys.modules with the outer run.
    pytester.makepyfile(test_inner_samples=SAMPLES_TEST, test_inner_gates=GATES_TEST)
    return pytester


def configure(pytester: pytest.Pytester, extra: str = "", *, adapter: bool = True) -> None:
    """Write pyproject.toml with [tool.tunegate] (eval_set, optionally adapter) plus `extra` TOML."""
    lines = ['[tool.tunegate]', 'eval_set = "eval.jsonl"'] + (['adapter = "adapter"'] if adapter else [])
    (pytester.path / "pyproject.toml").write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")


def collected_ids(result: pytest.RunResult) -> list[str]:
    """The node ids `--collect-only -q` printed (one per line, before the summary)."""
    return [line.split("::", 1)[1] for line in result.outlines if "::" in line]


def sample_ids(modes: list[str], ids: list[str]) -> list[str]:
    return [f"test_sample[{mode}-{i}]" for mode in modes for i in ids]


SAFE_IDS = ["refund_window_001", "q2", "shipping_time_EU_2"]
THRESHOLDS = """
[tool.tunegate.thresholds.finetuned]
rougeL = 0.4
rouge1 = 0.3
[tool.tunegate.thresholds.prompt_eng]
rougeL = 0.2
"""


# --- parametrisation -------------------------------------------------------------------------


def test_every_mode_and_sample_is_a_test_when_an_adapter_is_set(inner: pytest.Pytester) -> None:
    configure(inner, THRESHOLDS)
    result = inner.runpytest("--collect-only", "-q", "test_inner_samples.py", "test_inner_gates.py")
    assert result.ret == pytest.ExitCode.OK
    assert collected_ids(result) == sample_ids(["base", "prompt_eng", "finetuned"], SAFE_IDS) + [
        "test_threshold[finetuned-rougeL]",
        "test_threshold[finetuned-rouge1]",
        "test_threshold[prompt_eng-rougeL]",
    ]


def test_without_an_adapter_only_base_and_prompt_eng(inner: pytest.Pytester) -> None:
    configure(inner, adapter=False)
    result = inner.runpytest("--collect-only", "-q", "test_inner_samples.py")
    assert result.ret == pytest.ExitCode.OK
    assert collected_ids(result) == sample_ids(["base", "prompt_eng"], SAFE_IDS)
    assert "finetuned" not in result.stdout.str()


def test_sample_id_with_spaces_and_slashes_is_sanitized(inner: pytest.Pytester) -> None:
    configure(inner)
    result = inner.runpytest("--collect-only", "-q", "test_inner_samples.py")
    result.stdout.fnmatch_lines(["test_inner_samples.py::test_sample[finetuned-shipping_time_EU_2]"])
    assert "shipping time" not in result.stdout.str()
    assert "EU/2" not in result.stdout.str() and "time/EU" not in result.stdout.str()


def test_marker_finetuned_selects_the_finetuned_samples_and_gates(inner: pytest.Pytester) -> None:
    configure(inner, THRESHOLDS)
    result = inner.runpytest("-m", "finetuned", "--collect-only", "-q", "test_inner_samples.py", "test_inner_gates.py")
    assert result.ret == pytest.ExitCode.OK
    assert collected_ids(result) == sample_ids(["finetuned"], SAFE_IDS) + [
        "test_threshold[finetuned-rougeL]",
        "test_threshold[finetuned-rouge1]",
    ]
    assert "test_threshold[prompt_eng-rougeL]" not in result.stdout.str()
    result.stdout.fnmatch_lines(["5/12 tests collected (7 deselected)*"])


def test_marker_prompt_eng_selects_its_gate(inner: pytest.Pytester) -> None:
    configure(inner, THRESHOLDS)
    result = inner.runpytest("-m", "prompt_eng", "--collect-only", "-q", "test_inner_gates.py")
    assert collected_ids(result) == ["test_threshold[prompt_eng-rougeL]"]


PASS_RATE_TEST = """
def test_sample_pass_rate(sample_pass_rate_verdict):
    assert sample_pass_rate_verdict.passed, sample_pass_rate_verdict.message
"""


def test_sample_pass_rate_gate_per_gated_mode(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_pass_rate=PASS_RATE_TEST)
    configure(inner, 'sample_gate_modes = ["finetuned", "prompt_eng"]\n')
    result = inner.runpytest("--collect-only", "-q", "test_inner_pass_rate.py")
    assert collected_ids(result) == ["test_sample_pass_rate[finetuned]", "test_sample_pass_rate[prompt_eng]"]
    selected = inner.runpytest("-m", "finetuned", "--collect-only", "-q", "test_inner_pass_rate.py")
    assert collected_ids(selected) == ["test_sample_pass_rate[finetuned]"]


def test_eval_limit_keeps_the_first_samples_per_mode(inner: pytest.Pytester) -> None:
    configure(inner)
    result = inner.runpytest("--eval-limit", "2", "--collect-only", "-q", "test_inner_samples.py")
    assert result.ret == pytest.ExitCode.OK
    assert collected_ids(result) == sample_ids(["base", "prompt_eng", "finetuned"], SAFE_IDS[:2])


def test_command_line_threshold_adds_a_gate(inner: pytest.Pytester) -> None:
    configure(inner, THRESHOLDS)
    result = inner.runpytest("--threshold", "base.rouge2=0.1", "--threshold", "finetuned.rougeL=0.5",
                             "--collect-only", "-q", "test_inner_gates.py")
    assert collected_ids(result) == [
        "test_threshold[finetuned-rougeL]",
        "test_threshold[finetuned-rouge1]",
        "test_threshold[prompt_eng-rougeL]",
        "test_threshold[base-rouge2]",
    ]


def test_eval_set_option_alone_activates_the_plugin(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--eval-set", "eval.jsonl", "--collect-only", "-q", "test_inner_samples.py")
    assert result.ret == pytest.ExitCode.OK
    assert collected_ids(result) == sample_ids(["base", "prompt_eng"], SAFE_IDS)


# --- usage errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "args", "eval_line", "expected"),
    [
        pytest.param('eval_sett = "eval.jsonl"\n', [], None,
                     ["[tool.tunegate]: unknown key 'eval_sett'", "Did you mean 'eval_set'?"], id="unknown-key"),
        pytest.param('max_new_tokens = "64"\n', [], None, ["max_new_tokens must be int, got '64'"], id="wrong-type"),
        pytest.param("", ["--eval-set", "missing.jsonl"], None,
                     ["eval_set", "missing.jsonl' does not exist", "Set eval_set (or --eval-set)"],
                     id="missing-eval-set"),
        pytest.param("", ["--threshold", "nonsense"], None,
                     ["--threshold 'nonsense': expected MODE.METRIC=NUMBER"], id="bad-threshold"),
        pytest.param("", ["--threshold", "finetuned.bleu=0.3"], None,
                     ["thresholds.finetuned.bleu: 'bleu' is not among the scored metrics"], id="threshold-unknown-metric"),
        pytest.param("", ["--tunegate-set", "eval_sett=x.jsonl"], None,
                     ["--tunegate-set eval_sett: unknown key 'eval_sett'", "Did you mean 'eval_set'?"],
                     id="tunegate-set-unknown-key"),
        pytest.param("", ["--tunegate-set", "max_new_tokens"], None,
                     ["--tunegate-set 'max_new_tokens': expected KEY=VALUE"], id="tunegate-set-no-equals"),
        pytest.param("", [], '{"id": "broken", "prompt": "x"',
                     ["eval.jsonl line 4: invalid JSON", "Each line must be one complete JSON object"],
                     id="broken-eval-line"),
        pytest.param("", [], '{"id": "r4", "prompt": "x"}',
                     ["eval.jsonl line 4: field \"reference\" is missing"], id="missing-reference"),
        pytest.param('adapter = "eval.jsonl"\n', [], None, ["adapter", "is not a directory"], id="adapter-not-a-dir"),
        pytest.param("", ["--tunegate-config", "nowhere.toml"], None, ["nowhere.toml: file not found"],
                     id="missing-config-file"),
    ],
)
def test_configuration_errors_are_usage_errors_without_traceback(
    inner: pytest.Pytester, extra: str, args: list[str], eval_line: str | None, expected: list[str]
) -> None:
    configure(inner, extra, adapter="adapter" not in extra)
    if eval_line is not None:
        with open(inner.path / "eval.jsonl", "a", encoding="utf-8") as handle:
            handle.write(eval_line + "\n")
    result = inner.runpytest(*args, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    stderr = result.stderr.str()
    assert "tunegate: " in stderr
    for text in expected:
        assert text in stderr
    assert "Traceback" not in stderr + result.stdout.str()


def test_usage_error_in_a_subprocess_too(inner: pytest.Pytester) -> None:
    configure(inner, 'eval_sett = "eval.jsonl"\n')
    result = inner.runpytest_subprocess("-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: tunegate: *pyproject.toml [[]tool.tunegate[]]: unknown key 'eval_sett'*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


# --- inactive without configuration ----------------------------------------------------------


def test_plugin_is_inactive_without_configuration(pytester: pytest.Pytester) -> None:
    (pytester.path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (pytester.path / "pyproject.toml").write_text('[project]\nname = "unrelated"\n', encoding="utf-8")
    pytester.makepyfile(
        """
        def test_x():
            pass

        def test_needs_gate(gate_run):
            pass
        """
    )
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1, errors=1)  # pytest.fail in a fixture: an error at setup
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_needs_gate*",
        "tunegate is not configured: add [[]tool.tunegate[]] with eval_set = *--eval-set FILE*",
    ])
    assert "Traceback" not in result.stdout.str()


# --- help and markers ------------------------------------------------------------------------


def test_help_lists_the_tunegate_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "tunegate release gate (values override [[]tool.tunegate[]]):",
        "*--base-model=*",
    ])
    out = result.stdout.str()
    for option in ("--adapter", "--eval-set", "--eval-limit", "--threshold", "--tunegate-set", "--tunegate-config"):
        assert option in out


def test_help_works_while_the_configuration_is_broken(inner: pytest.Pytester) -> None:
    configure(inner, 'eval_sett = "eval.jsonl"\n')
    result = inner.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    assert "--eval-limit" in result.stdout.str()


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "@pytest.mark.base: *raw base model*",
        "@pytest.mark.prompt_eng: *engineered system prompt*",
        "@pytest.mark.finetuned: *adapter*",
        "@pytest.mark.slow: *loads a real model*",
    ], consecutive=False)


def test_markers_are_known_under_strict_markers(inner: pytest.Pytester) -> None:
    configure(inner)
    inner.makepyfile(test_marked="""
        import pytest

        @pytest.mark.slow
        @pytest.mark.finetuned
        def test_marked():
            pass
    """)
    result = inner.runpytest("--strict-markers", "-q", "test_marked.py")
    result.assert_outcomes(passed=1)


# --- significance and baseline gates ----------------------------------------------------------

SIGNIFICANCE_TEST = """
def test_significant_gain(gain_verdict):
    assert gain_verdict.passed, gain_verdict.message


def test_finetune_verdict(adapter_verdict):
    assert adapter_verdict.passed, adapter_verdict.message


def test_no_regression(baseline_scores, baseline_snapshot):
    assert baseline_scores == baseline_snapshot
"""
GAIN_IDS = [
    f"test_significant_gain[vs-{opponent}-{metric}]"
    for opponent in ("base", "prompt_eng")
    for metric in ("rouge1", "rouge2", "rougeL", "bertscore")
]


def test_gain_gates_cover_every_metric_and_opponent_and_count_as_finetuned(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_significance=SIGNIFICANCE_TEST)
    configure(inner)
    result = inner.runpytest("-m", "finetuned", "--collect-only", "-q", "test_inner_significance.py")
    assert collected_ids(result) == GAIN_IDS + ["test_finetune_verdict", "test_no_regression"]
    others = inner.runpytest("-m", "not finetuned", "--collect-only", "-q", "test_inner_significance.py")
    assert collected_ids(others) == []


def test_gain_metrics_and_opponents_are_configurable(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_significance=SIGNIFICANCE_TEST)
    configure(inner, 'gain_metrics = ["rougeL"]\ngain_over = ["prompt_eng"]\n')
    result = inner.runpytest("--collect-only", "-q", "test_inner_significance.py")
    assert collected_ids(result) == ["test_significant_gain[vs-prompt_eng-rougeL]", "test_finetune_verdict", "test_no_regression"]


def test_without_an_adapter_the_adapter_gates_skip(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_significance=SIGNIFICANCE_TEST)
    configure(inner, adapter=False)
    result = inner.runpytest("-q", "-rs", "-p", "no:cacheprovider", "test_inner_significance.py")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*no adapter configured*", "*3 skipped*"])


def test_accepting_a_baseline_from_a_slice_is_refused(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_significance=SIGNIFICANCE_TEST)
    configure(inner)
    result = inner.runpytest("-q", "-p", "no:cacheprovider", "--snapshot-update", "--eval-limit", "2",
                             "test_inner_significance.py::test_no_regression")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*--snapshot-update with --eval-limit 2 would accept a baseline of only 2 samples*"])
    assert not (inner.path / "baselines").exists()


# --- judge gates ------------------------------------------------------------------------------

JUDGE_TEST = """
def test_judge_errors(judge_error_verdict):
    assert judge_error_verdict.passed, judge_error_verdict.message


def test_pairwise(pairwise_verdict):
    assert pairwise_verdict.passed, pairwise_verdict.message
"""
JUDGE = '[tool.tunegate.judge]\nbackend = "local"\n'


def test_judge_gates_one_per_kind_marked_with_the_judged_modes(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_judge=JUDGE_TEST)
    configure(inner, JUDGE)
    result = inner.runpytest("--collect-only", "-q", "test_inner_judge.py")
    assert collected_ids(result) == [
        "test_judge_errors[reference]", "test_judge_errors[blind]", "test_judge_errors[pairwise]", "test_pairwise",
    ]
    for mode in ("finetuned", "base"):
        selected = inner.runpytest("-m", mode, "--collect-only", "-q", "test_inner_judge.py")
        assert "test_judge_errors[reference]" in collected_ids(selected)
    only_base = inner.runpytest("-m", "base and not finetuned", "--collect-only", "-q", "test_inner_judge.py")
    assert "test_pairwise" not in collected_ids(only_base)


def test_no_judge_gates_without_a_judge(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_judge=JUDGE_TEST)
    configure(inner)
    result = inner.runpytest("-q", "-rs", "-p", "no:cacheprovider", "test_inner_judge.py")
    result.stdout.fnmatch_lines(["*got empty parameter set*", "*no pairwise judge configured*"])


def test_judge_kinds_select_the_gates(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_judge=JUDGE_TEST)
    configure(inner, JUDGE + 'kinds = ["blind"]\n')
    result = inner.runpytest("--collect-only", "-q", "test_inner_judge.py")
    assert collected_ids(result) == ["test_judge_errors[blind]", "test_pairwise"]


def test_an_api_key_in_the_config_is_refused_without_echoing_it(inner: pytest.Pytester) -> None:
    configure(inner, '[tool.tunegate.judge]\nbackend = "openai"\nmodel = "m"\napi_key = "sk-do-not-print-me"\n')
    result = inner.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "never write an API key into a config file" in output and "sk-do-not-print-me" not in output


# --- the training gate --------------------------------------------------------------------------

TRAINING_TEST = """
def test_training_curve(training_verdict):
    assert training_verdict.passed, training_verdict.message
"""


def trainer_state(evals: list[float]) -> str:
    history = []
    for i, loss in enumerate(evals):
        step = 10 * (i + 1)
        history += [{"step": step, "epoch": step / 40, "loss": 2.0 - 0.05 * i}, {"step": step, "epoch": step / 40, "eval_loss": loss}]
    return json.dumps({"global_step": 10 * len(evals), "log_history": history})


def test_training_gate_reads_the_state_beside_the_adapter_and_fails_an_overfit(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_training=TRAINING_TEST)
    configure(inner)
    (inner.path / "adapter" / "trainer_state.json").write_text(
        trainer_state([2.0, 1.6, 1.3, 1.2, 1.25, 1.32, 1.41, 1.5]), encoding="utf-8")
    result = inner.runpytest("-q", "-p", "no:cacheprovider", "test_inner_training.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAIL training: shipped step 80*best eval_loss 1.2000 at step 40*stop at step 40*"])
    selected = inner.runpytest("-m", "finetuned", "--collect-only", "-q", "test_inner_training.py")
    assert collected_ids(selected) == ["test_training_curve"]


def test_training_gate_passes_a_healthy_run_configured_by_path(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_training=TRAINING_TEST)
    (inner.path / "run").mkdir()
    (inner.path / "run" / "trainer_state.json").write_text(trainer_state([2.0, 1.6, 1.3, 1.2, 1.1, 1.05]), encoding="utf-8")
    configure(inner, 'training_state = "run"\n')
    result = inner.runpytest("-q", "-p", "no:cacheprovider", "test_inner_training.py")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*PASS training: no divergence over 6 evaluations*"])


def test_training_gate_skips_without_a_state_and_fails_clearly_on_a_broken_one(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_training=TRAINING_TEST)
    configure(inner)
    skipped = inner.runpytest("-q", "-rs", "-p", "no:cacheprovider", "test_inner_training.py")
    skipped.stdout.fnmatch_lines(["*no trainer_state.json beside the adapter*set training_state*"])
    (inner.path / "adapter" / "trainer_state.json").write_text('{"log_history": [{"step": 1, "loss": 2.0}]}', encoding="utf-8")
    broken = inner.runpytest("-q", "-p", "no:cacheprovider", "test_inner_training.py")
    assert broken.ret == pytest.ExitCode.TESTS_FAILED
    broken.stdout.fnmatch_lines(["*eval_strategy*"])
    assert "Traceback" not in broken.stdout.str()


# --- the ablation gate --------------------------------------------------------------------------

ABLATION_TEST = """
def test_ablation_sweep(ablation_verdict):
    assert ablation_verdict.passed, ablation_verdict.message
"""


def test_ablation_gate_from_a_results_csv_with_its_plot_in_the_report(inner: pytest.Pytester) -> None:
    """Results computed elsewhere (seed 000's CSV) need no model: curves, best point, plot in the HTML."""
    inner.makepyfile(test_inner_ablation=ABLATION_TEST)
    (inner.path / "ablation.csv").write_text(
        "variable,value,rougeL,ci_low_rougeL,ci_high_rougeL\nrank,4,0.40,0.35,0.45\nrank,8,0.46,0.41,0.51\n"
        "rank,16,0.45,0.40,0.50\n", encoding="utf-8")
    configure(inner, '[tool.tunegate.ablation]\nvariable = "rank"\nresults_csv = "ablation.csv"\n')
    result = inner.runpytest("-q", "-p", "no:cacheprovider", "test_inner_ablation.py", "--html=report.html",
                             "--report-dir=plots")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*PASS ablation[[]lora_rank]:*ROUGE-L best 0.460 at lora_rank = 8*not tested*",
                                 "*tunegate: ablation along lora_rank*"])
    assert (inner.path / "plots" / "ablation.png").stat().st_size > 10_000
    assert "Ablation: LoRA rank r" in (inner.path / "report.html").read_text(encoding="utf-8")
    selected = inner.runpytest("-m", "finetuned", "--collect-only", "-q", "test_inner_ablation.py")
    assert collected_ids(selected) == ["test_ablation_sweep"]


def test_ablation_gate_skips_when_no_sweep_is_configured(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner_ablation=ABLATION_TEST)
    configure(inner)
    result = inner.runpytest("-q", "-rs", "-p", "no:cacheprovider", "test_inner_ablation.py")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*no ablation configured*[[]tool.tunegate.ablation]*"])
