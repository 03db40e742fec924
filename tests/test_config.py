"""Tests for tunegate.config: real TOML files, path resolution, and every error a user can hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.config import GateConfig, load_config, parse_override, parse_threshold
from tunegate.errors import AdapterError, ConfigError

EVAL_RECORDS = [
    {"id": "q1", "prompt": "What is 2+2?", "reference": "4"},
    {"id": "q2", "prompt": "Name a colour.", "reference": "Blue."},
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with a real eval set at data/eval.jsonl (pyproject written per test)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in EVAL_RECORDS), encoding="utf-8"
    )
    return tmp_path


def write_pyproject(folder: Path, body: str) -> Path:
    """pyproject.toml in `folder` whose text is `body` (TOML, including the [tool.tunegate] header)."""
    path = folder / "pyproject.toml"
    path.write_text(body, encoding="utf-8")
    return path


def tunegate_table(folder: Path, extra: str = "", *, eval_set: str = "data/eval.jsonl") -> Path:
    """pyproject.toml with `[tool.tunegate] eval_set = ...` plus `extra` lines."""
    return write_pyproject(folder, f'[tool.tunegate]\neval_set = "{eval_set}"\n{extra}')


def make_adapter(folder: Path, *, with_config: bool = True) -> Path:
    """A directory that looks like a saved PEFT adapter (config only checks the files exist)."""
    folder.mkdir(parents=True)
    if with_config:
        (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    return folder


def config_error(pyproject: Path | None, overrides: dict | None = None, **kwargs: object) -> str:
    """Load expecting a ConfigError; return its message."""
    with pytest.raises(ConfigError) as info:
        load_config(pyproject, overrides, **kwargs)
    return str(info.value)


# --- defaults and paths ----------------------------------------------------------------------


def test_defaults_with_only_eval_set(project: Path) -> None:
    pyproject = tunegate_table(project)
    config = load_config(pyproject)
    assert config.eval_set == project / "data" / "eval.jsonl"
    assert config.base_model == "demo"
    assert config.adapter is None
    assert config.report_dir == project / "reports"
    assert config.cache_dir == project / ".tunegate_cache"
    assert config.metrics == ("rouge1", "rouge2", "rougeL", "bertscore")
    assert config.primary_metric == "rougeL"
    assert config.max_new_tokens == 128
    assert config.limit is None
    assert dict(config.thresholds) == {}
    assert config.system_prompts == {"base": None, "prompt_eng": None, "finetuned": None}
    assert config.source == pyproject


def test_defaults_are_relative_to_the_pyproject_not_the_cwd(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject = tunegate_table(project)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_config(pyproject)
    assert config.eval_set == project / "data" / "eval.jsonl"
    assert config.report_dir == project / "reports"
    assert config.cache_dir == project / ".tunegate_cache"


def test_file_paths_resolve_against_the_pyproject_folder(project: Path) -> None:
    make_adapter(project / "out" / "adapter")
    pyproject = tunegate_table(
        project, 'adapter = "out/adapter"\nreport_dir = "build/r"\ncache_dir = "../shared_cache"\n'
    )
    config = load_config(pyproject)
    assert config.adapter == project / "out" / "adapter"
    assert config.report_dir == project / "build" / "r"
    assert config.cache_dir == (project.parent / "shared_cache").resolve()
    assert config.eval_set.is_absolute()


def test_overrides_resolve_against_override_base_and_win(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "other.jsonl").write_text(json.dumps(EVAL_RECORDS[0]) + "\n", encoding="utf-8")
    pyproject = tunegate_table(project, 'report_dir = "reports_from_file"\n')
    config = load_config(pyproject, {"eval_set": "other.jsonl", "report_dir": "r"}, override_base=cwd)
    assert config.eval_set == cwd / "other.jsonl"
    assert config.report_dir == cwd / "r"
    assert config.cache_dir == project / ".tunegate_cache"  # untouched default stays with the file


def test_overrides_only_without_a_pyproject(project: Path) -> None:
    config = load_config(None, {"eval_set": "data/eval.jsonl"}, override_base=project)
    assert config.eval_set == project / "data" / "eval.jsonl"
    assert config.source is None


def test_absolute_path_is_kept(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("abs") / "eval.jsonl"
    other.write_text(json.dumps(EVAL_RECORDS[0]) + "\n", encoding="utf-8")
    config = load_config(tunegate_table(project, eval_set=str(other)))
    assert config.eval_set == other


def test_values_of_every_type_are_read(project: Path) -> None:
    pyproject = tunegate_table(project, (
        'max_new_tokens = 64\nbatch_size = 4\nrepetition_penalty = 1.1\ndtype = "float32"\n'
        'device = "cpu"\nmetrics = ["rouge1", "rougeL"]\nprimary_metric = "rouge1"\n'
        'sample_gate_modes = ["prompt_eng", "finetuned"]\nlimit = 5\n'
        'system_prompt = "  Be brief.  "\n[tool.tunegate.field_map]\nreference = "answer"\n'
    ))
    config = load_config(pyproject)
    assert (config.max_new_tokens, config.batch_size, config.repetition_penalty) == (64, 4, 1.1)
    assert config.decoding.max_new_tokens == 64 and config.decoding.device == "cpu"
    assert config.metrics == ("rouge1", "rougeL")
    assert config.primary_metric == "rouge1"
    assert config.sample_gate_modes == ("prompt_eng", "finetuned")
    assert config.limit == 5
    assert config.system_prompt == "Be brief."
    assert dict(config.field_map) == {"reference": "answer"}


def test_limit_zero_means_no_limit(project: Path) -> None:
    assert load_config(tunegate_table(project, "limit = 0\n")).limit is None
    assert load_config(tunegate_table(project), {"limit": 0}).limit is None


def test_config_is_frozen(project: Path) -> None:
    config = load_config(tunegate_table(project))
    with pytest.raises(AttributeError):
        config.max_new_tokens = 1  # type: ignore[misc]
    assert isinstance(config, GateConfig)


# --- system prompt files ---------------------------------------------------------------------


def test_system_prompt_files_are_read_and_stripped(project: Path) -> None:
    (project / "prompts").mkdir()
    (project / "prompts" / "eng.txt").write_text("You are a support agent.\n\n", encoding="utf-8")
    (project / "prompts" / "ft.txt").write_text("Trained prompt.", encoding="utf-8")
    pyproject = tunegate_table(project, (
        'system_prompt_file = "prompts/eng.txt"\nfinetuned_system_prompt_file = "prompts/ft.txt"\n'
    ))
    config = load_config(pyproject)
    assert config.system_prompts == {"base": None, "prompt_eng": "You are a support agent.",
                                     "finetuned": "Trained prompt."}


def test_system_prompt_file_from_the_command_line_resolves_against_override_base(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "p.txt").write_text("From the CLI.", encoding="utf-8")
    config = load_config(tunegate_table(project), {"system_prompt_file": "p.txt"}, override_base=cwd)
    assert config.system_prompt == "From the CLI."


def test_system_prompt_and_its_file_together_is_an_error(project: Path) -> None:
    (project / "p.txt").write_text("x", encoding="utf-8")
    message = config_error(tunegate_table(project, 'system_prompt = "hi"\nsystem_prompt_file = "p.txt"\n'))
    assert "pyproject.toml [tool.tunegate]" in message
    assert "set either 'system_prompt' or 'system_prompt_file', not both" in message


def test_unreadable_system_prompt_file(project: Path) -> None:
    message = config_error(tunegate_table(project, 'system_prompt_file = "prompts/missing.txt"\n'))
    assert "system_prompt_file" in message
    assert str(project / "prompts" / "missing.txt") in message
    assert "cannot be read" in message and "Fix the path" in message


# --- errors: keys, types, consistency --------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param('eval_sett = "x.jsonl"\n', ["unknown key 'eval_sett'", "Did you mean 'eval_set'?"],
                     id="unknown-key-typo"),
        pytest.param('max_new_token = 64\n', ["unknown key 'max_new_token'", "Did you mean 'max_new_tokens'?"],
                     id="unknown-key-plural"),
        pytest.param('zzzzz = 1\n', ["unknown key 'zzzzz'", "Known keys:", "eval_set"], id="unknown-key-no-match"),
        pytest.param('max_new_tokens = "64"\n', ["max_new_tokens must be int, got '64'"], id="int-as-string"),
        pytest.param('metrics = "rougeL"\n', ["metrics must be list or tuple, got 'rougeL'"], id="list-as-string"),
        pytest.param('batch_size = true\n', ["batch_size must be int, got True"], id="bool-for-int"),
        pytest.param('repetition_penalty = "1.1"\n', ["repetition_penalty must be float or int"], id="float-as-string"),
        pytest.param('max_new_tokens = 0\n', ["max_new_tokens must be at least 1, got 0"], id="zero-tokens"),
        pytest.param('metrics = ["rougeL", "bleurt"]\n', ["metrics has unknown metric 'bleurt'", "known: rouge1"],
                     id="unknown-metric"),
        pytest.param('metrics = ["rouge1"]\n', ["primary_metric 'rougeL' is not among metrics ['rouge1']"],
                     id="primary-not-in-metrics"),
        pytest.param('sample_gate_modes = ["tuned"]\n',
                     ["sample_gate_modes has 'tuned'", "base, prompt_eng, finetuned"], id="unknown-sample-gate-mode"),
        pytest.param('[tool.tunegate.thresholds.tuned]\nrougeL = 0.3\n',
                     ["thresholds.tuned: unknown mode", "modes are base, prompt_eng, finetuned"],
                     id="threshold-unknown-mode"),
        pytest.param('[tool.tunegate.thresholds.prompt_eng]\nbleu = 0.3\n',
                     ["thresholds.prompt_eng.bleu: 'bleu' is not among the scored metrics"], id="threshold-unknown-metric"),
        pytest.param('[tool.tunegate.thresholds.finetuned]\nrougeL = 0.3\n',
                     ["thresholds.finetuned is set but no adapter is configured", "Set adapter (or --adapter)"],
                     id="finetuned-threshold-without-adapter"),
        pytest.param('[tool.tunegate.thresholds.finetuned]\nrougeL = "high"\n',
                     ["thresholds.finetuned.rougeL must be a number, got 'high'"], id="threshold-not-a-number"),
        pytest.param('thresholds = 0.4\n', ["thresholds must be a table like [tool.tunegate.thresholds.finetuned]"],
                     id="thresholds-not-a-table"),
        pytest.param('base_model = "models/nowhere"\n', ["base_model", "models/nowhere", "no config.json",
                                                         'Use "demo"'], id="base-model-not-a-model-dir"),
        pytest.param('bertscore_model = "bert"\n', ["bertscore_model", "no config.json", "downloaded BERT-style model"],
                     id="bertscore-model-not-a-model-dir"),
        pytest.param('report_dir = 3\n', ["report_dir must be a path string, got 3"], id="path-not-a-string"),
    ],
)
def test_bad_file_values(project: Path, extra: str, expected: list[str]) -> None:
    message = config_error(tunegate_table(project, extra))
    assert f"{project / 'pyproject.toml'} [tool.tunegate]" in message
    for text in expected:
        assert text in message


def test_unknown_key_from_the_command_line_names_the_option(project: Path) -> None:
    message = config_error(tunegate_table(project), {"eval_sett": "x.jsonl"})
    assert message.startswith("--tunegate-set eval_sett: unknown key 'eval_sett'.")
    assert "Did you mean 'eval_set'?" in message


def test_wrong_type_from_the_command_line_names_the_option(project: Path) -> None:
    message = config_error(tunegate_table(project), {"max_new_tokens": "lots"})
    assert message == "--tunegate-set max_new_tokens: max_new_tokens must be int, got 'lots'."


def test_missing_eval_set_key_says_how_to_fix_it(project: Path) -> None:
    message = config_error(write_pyproject(project, "[tool.tunegate]\nmax_new_tokens = 32\n"))
    assert "no eval set configured" in message
    assert 'Add `eval_set = "path/to/eval.jsonl"` under [tool.tunegate]' in message
    assert "--eval-set FILE" in message


def test_eval_set_path_that_does_not_exist(project: Path) -> None:
    message = config_error(tunegate_table(project, eval_set="data/missing.jsonl"))
    assert f"eval_set {str(project / 'data' / 'missing.jsonl')!r} does not exist" in message
    assert "Set eval_set (or --eval-set)" in message


def test_adapter_without_adapter_config_is_an_adapter_error(project: Path) -> None:
    make_adapter(project / "adapter", with_config=False)
    with pytest.raises(AdapterError) as info:
        load_config(tunegate_table(project, 'adapter = "adapter"\n'))
    message = str(info.value)
    assert f"{project / 'adapter'}: adapter_config.json is missing" in message
    assert "found: adapter_model.safetensors" in message
    assert "PeftModel.save_pretrained" in message


def test_adapter_that_is_not_a_directory(project: Path) -> None:
    with pytest.raises(AdapterError, match="is not a directory"):
        load_config(tunegate_table(project, 'adapter = "no_such_adapter"\n'))


def test_local_base_model_directory_is_accepted(project: Path) -> None:
    (project / "models" / "base").mkdir(parents=True)
    (project / "models" / "base" / "config.json").write_text("{}", encoding="utf-8")
    config = load_config(tunegate_table(project, 'base_model = "models/base"\n'))
    assert config.base_model == str(project / "models" / "base")


def test_not_a_pyproject_file(tmp_path: Path) -> None:
    message = config_error(tmp_path / "nope.toml")
    assert f"{tmp_path / 'nope.toml'}: file not found" in message
    assert "--tunegate-config" in message


def test_invalid_toml(tmp_path: Path) -> None:
    message = config_error(write_pyproject(tmp_path, "[tool.tunegate\n"))
    assert "not valid TOML" in message and "Fix the syntax" in message


# --- thresholds ------------------------------------------------------------------------------


def test_thresholds_are_read_per_mode(project: Path) -> None:
    make_adapter(project / "adapter")
    pyproject = tunegate_table(project, (
        'adapter = "adapter"\n[tool.tunegate.thresholds.finetuned]\nrougeL = 0.4\nrouge1 = 1\n'
        "[tool.tunegate.thresholds.prompt_eng]\nrougeL = 0.2\n"
    ))
    config = load_config(pyproject)
    assert {m: dict(v) for m, v in config.thresholds.items()} == {
        "finetuned": {"rougeL": 0.4, "rouge1": 1.0},
        "prompt_eng": {"rougeL": 0.2},
    }
    assert isinstance(config.thresholds["finetuned"]["rouge1"], float)


def test_command_line_thresholds_merge_with_the_file(project: Path) -> None:
    make_adapter(project / "adapter")
    pyproject = tunegate_table(project, 'adapter = "adapter"\n[tool.tunegate.thresholds.finetuned]\nrougeL = 0.4\nrouge1 = 0.5\n')
    overrides = {"thresholds": {"finetuned": {"rougeL": 0.6}, "base": {"rouge2": 0.1}}}
    config = load_config(pyproject, overrides)
    assert {m: dict(v) for m, v in config.thresholds.items()} == {
        "finetuned": {"rougeL": 0.6, "rouge1": 0.5},
        "base": {"rouge2": 0.1},
    }


def test_command_line_threshold_with_an_unknown_metric(project: Path) -> None:
    message = config_error(tunegate_table(project), {"thresholds": {"prompt_eng": {"bleu": 0.1}}})
    assert "thresholds.prompt_eng.bleu: 'bleu' is not among the scored metrics" in message


# --- parse_override / parse_threshold --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_new_tokens=64", ("max_new_tokens", 64)),
        ('metrics=["rougeL"]', ("metrics", ["rougeL"])),
        ("system_prompt=hello world", ("system_prompt", "hello world")),
        ('system_prompt="quoted"', ("system_prompt", "quoted")),
        ("repetition_penalty=1.2", ("repetition_penalty", 1.2)),
        ("eval_set=data/eval.jsonl", ("eval_set", "data/eval.jsonl")),
        (" limit = 3", ("limit", 3)),
        ("system_prompt=a=b", ("system_prompt", "a=b")),
    ],
)
def test_parse_override(text: str, expected: tuple[str, object]) -> None:
    key, value = parse_override(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["max_new_tokens", "=64", " =x", ""])
def test_parse_override_needs_key_and_value(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert str(info.value) == f"--tunegate-set {text!r}: expected KEY=VALUE, e.g. --tunegate-set max_new_tokens=64."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("finetuned.rougeL=0.4", ("finetuned", "rougeL", 0.4)),
        ("prompt_eng.rouge1=1", ("prompt_eng", "rouge1", 1.0)),
        (" base . rouge2 = 0.25", ("base", "rouge2", 0.25)),
    ],
)
def test_parse_threshold(text: str, expected: tuple[str, str, float]) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("text", ["nonsense", "finetuned.rougeL", "finetuned=0.4", "finetuned.rougeL=high",
                                  "finetuned.rougeL="])
def test_parse_threshold_bad(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_threshold(text)
    assert str(info.value) == (
        f"--threshold {text!r}: expected MODE.METRIC=NUMBER, e.g. --threshold finetuned.rougeL=0.4."
    )


def test_threshold_must_be_finite() -> None:
    with pytest.raises(ConfigError, match="expected MODE.METRIC=NUMBER"):
        parse_threshold("finetuned.rougeL=nan")


def test_negative_limit_is_an_error(project: Path) -> None:
    message = config_error(tunegate_table(project, "limit = -3\n"))
    assert "limit must be 0 (no limit) or a positive number" in message


def test_command_line_system_prompt_replaces_the_files_prompt_file(project: Path) -> None:
    (project / "prompt.txt").write_text("from the file", encoding="utf-8")
    pyproject = tunegate_table(project, 'system_prompt_file = "prompt.txt"\n')
    config = load_config(pyproject, {"system_prompt": "from the command line"})
    assert config.system_prompt == "from the command line"


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_min_sample_pass_rate_must_be_a_share(project: Path, value: str) -> None:
    message = config_error(tunegate_table(project, f"min_sample_pass_rate = {value}\n"))
    assert "min_sample_pass_rate must be in (0, 1]" in message


def test_min_sample_pass_rate_is_read(project: Path) -> None:
    assert load_config(tunegate_table(project, "min_sample_pass_rate = 0.9\n")).min_sample_pass_rate == 0.9
    assert load_config(tunegate_table(project)).min_sample_pass_rate == 1.0


# --- significance and baseline keys ------------------------------------------------------------


def test_significance_defaults_follow_the_metrics(project: Path) -> None:
    config = load_config(tunegate_table(project, 'metrics = ["rougeL", "bertscore"]\n'))
    assert config.gain_metrics == ("rougeL", "bertscore") and config.regression_metrics == ("rougeL", "bertscore")
    assert config.gain_over == ("base", "prompt_eng") and config.alpha == 0.05 and config.bootstrap_iters == 10_000
    assert dict(config.min_gain) == {} and dict(config.regression_margin) == {}
    assert config.prompt_suffices_ratio == 0.9
    assert config.baseline_dir == project / "baselines"


def test_significance_keys_are_read(project: Path) -> None:
    config = load_config(tunegate_table(project, "\n".join([
        'gain_metrics = ["rougeL"]',
        'gain_over = ["prompt_eng"]',
        "alpha = 0.01",
        "bootstrap_iters = 2000",
        "seed = 7",
        "prompt_suffices_ratio = 0.95",
        'regression_metrics = ["bertscore"]',
        'baseline_dir = "release/baselines"',
        "[tool.tunegate.min_gain]",
        "rougeL = 0.02",
        "[tool.tunegate.regression_margin]",
        "bertscore = 0.01",
    ]) + "\n"))
    assert config.gain_metrics == ("rougeL",) and config.gain_over == ("prompt_eng",)
    assert (config.alpha, config.bootstrap_iters, config.seed, config.prompt_suffices_ratio) == (0.01, 2000, 7, 0.95)
    assert config.regression_metrics == ("bertscore",)
    assert dict(config.min_gain) == {"rougeL": 0.02} and dict(config.regression_margin) == {"bertscore": 0.01}
    assert config.baseline_dir == project / "release" / "baselines"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("alpha = 0.7", "alpha must be in (0, 0.5)"),
        ("alpha = 5", "alpha must be float"),
        ("bootstrap_iters = 100", "bootstrap_iters must be at least 1000"),
        ("prompt_suffices_ratio = 1.5", "prompt_suffices_ratio must be in (0, 1]"),
        ('gain_metrics = ["bleu"]', "gain_metrics has 'bleu', which is not among the scored metrics"),
        ('gain_over = ["finetuned"]', "gain_over has 'finetuned'"),
        ("[tool.tunegate.min_gain]\nrougeL = -0.1", "min_gain.rougeL must be a number >= 0"),
        ("[tool.tunegate.regression_margin]\nrougeL = true", "regression_margin.rougeL must be a number >= 0"),
        ("[tool.tunegate.regression_margin]\njudge = 0.1", "regression_margin has 'judge'"),
    ],
)
def test_bad_significance_values(project: Path, extra: str, expected: str) -> None:
    assert expected in config_error(tunegate_table(project, extra + "\n"))


# --- the judge table --------------------------------------------------------------------------


def test_judge_is_off_by_default(project: Path) -> None:
    config = load_config(tunegate_table(project))
    assert not config.judge.enabled and config.judge.metrics() == ()
    assert config.scored_metrics == config.metrics


def test_judge_table_is_read_and_adds_its_metrics(project: Path) -> None:
    config = load_config(tunegate_table(project, "\n".join([
        'gain_metrics = ["rougeL", "judge_overall"]',
        "[tool.tunegate.judge]",
        'backend = "openai"',
        'model = "gpt-4o-mini"',
        'base_url = "http://127.0.0.1:8000/v1"',
        'api_key_env = "MY_JUDGE_KEY"',
        'kinds = ["reference", "pairwise"]',
        "timeout_s = 20",
        "concurrency = 8",
        "error_budget = 0.1",
        "price_input_per_mtok = 0.15",
        "price_output_per_mtok = 0.6",
        "[tool.tunegate.thresholds.base]",
        "judge_accuracy = 3.5",
    ]) + "\n"))
    judge = config.judge
    assert (judge.backend, judge.model, judge.base_url, judge.api_key_env) == (
        "openai", "gpt-4o-mini", "http://127.0.0.1:8000/v1", "MY_JUDGE_KEY")
    assert judge.kinds == ("reference", "pairwise") and judge.timeout_s == 20.0 and judge.concurrency == 8
    assert judge.metrics() == ("judge_accuracy", "judge_completeness", "judge_conciseness", "judge_overall")
    assert config.gain_metrics == ("rougeL", "judge_overall")
    assert config.thresholds["base"]["judge_accuracy"] == 3.5


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['backend = "gpt"'], "judge.backend must be one of none, local, openai, got 'gpt'"),
        (['backend = "openai"'], 'judge.backend = "openai" needs judge.model'),
        (['backend = "openai"', 'model = "m"', 'api_key = "sk-live-123"'], "never write an API key into a config file"),
        (['kinds = ["reference", "vibes"]'], "judge.kinds has 'vibes'"),
        (["error_budget = 5"], "judge.error_budget must be a share in [0, 1]"),
        (["concurrency = 0"], "judge.concurrency must be positive"),
        (["timeout = 5"], "judge.timeout: unknown key. Did you mean 'timeout_s'?"),
        (['pairwise_opponent = "finetuned"'], "judge.pairwise_opponent must be 'base' or 'prompt_eng'"),
    ],
)
def test_bad_judge_values(project: Path, lines: list[str], expected: str) -> None:
    message = config_error(tunegate_table(project, "[tool.tunegate.judge]\n" + "\n".join(lines) + "\n"))
    assert expected in message
    assert "sk-live-123" not in message


def test_judge_metrics_need_the_judge(project: Path) -> None:
    message = config_error(tunegate_table(project, "[tool.tunegate.thresholds.base]\njudge_overall = 3\n"))
    assert "judge_overall' is not among the scored metrics" in message


def test_training_keys(project: Path) -> None:
    (project / "runs").mkdir()
    config = load_config(tunegate_table(project, 'training_state = "runs"\noverfit_patience = 5\n'))
    assert config.training_state == project / "runs" and config.overfit_patience == 5
    assert load_config(tunegate_table(project)).training_state is None
    assert "overfit_patience must be at least 1" in config_error(tunegate_table(project, "overfit_patience = 0\n"))


# --- the ablation table ------------------------------------------------------------------------


def test_ablation_is_off_by_default(project: Path) -> None:
    assert not load_config(tunegate_table(project)).ablation.enabled


def test_ablation_adapters_globs_expand_sorted_and_deduplicated(project: Path) -> None:
    for name in ("r16", "r2", "r8"):
        make_adapter(project / "sweep" / name)
    (project / "sweep" / "notes.txt").write_text("not a run")
    table = '[tool.tunegate.ablation]\nvariable = "rank"\nadapters = ["sweep/r*", "sweep/r8"]\nmetrics = ["rougeL"]\n'
    ablation = load_config(tunegate_table(project, table)).ablation
    assert ablation.enabled and ablation.variable == "lora_rank"  # seed 000's name is accepted
    assert [p.name for p in ablation.adapters] == ["r2", "r8", "r16"]  # digits compare as numbers
    assert ablation.metrics == ("rougeL",) and ablation.results_csv is None


def test_ablation_results_csv(project: Path) -> None:
    (project / "ablation.csv").write_text("variable,value,rougeL\nlora_rank,4,0.4\nlora_rank,8,0.5\n")
    table = '[tool.tunegate.ablation]\nvariable = "lora_rank"\nresults_csv = "ablation.csv"\n'
    ablation = load_config(tunegate_table(project, table)).ablation
    assert ablation.results_csv == project / "ablation.csv" and ablation.adapters == ()


def test_ablation_from_the_command_line(project: Path) -> None:
    for name in ("a", "b"):
        make_adapter(project / name)
    value = parse_override(f'ablation={{variable = "epochs", adapters = ["{project / "a"}", "{project / "b"}"]}}')[1]
    ablation = load_config(tunegate_table(project), {"ablation": value}).ablation
    assert ablation.variable == "epochs" and len(ablation.adapters) == 2


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['variable = "learning_rate"', 'adapters = ["x", "y"]'], "ablation.variable must be one of lora_rank"),
        (['variable = "lora_rank"'], "set either adapters"),
        (['variable = "lora_rank"', 'adapters = ["a", "b"]', 'results_csv = "c.csv"'], "not both"),
        (['variable = "lora_rank"', 'adapters = ["runs/*"]'], "'runs/*' matches no directory"),
        (['variable = "lora_rank"', 'adapters = ["a"]'], "a sweep needs at least 2"),
        (['variable = "lora_rank"', 'adapters = ["a", "missing"]'], "ablation.adapters:"),
        (['variable = "lora_rank"', 'adapters = ["a", "b"]', 'metrics = ["bleu"]'], "ablation.metrics has 'bleu'"),
        (['variable = "lora_rank"', 'results_csv = "none.csv"'], "ablation.results_csv"),
        (['variable = "lora_rank"', 'adapter = ["a", "b"]'], "Did you mean 'adapters'?"),
    ],
)
def test_bad_ablation_values(project: Path, lines: list[str], expected: str) -> None:
    for name in ("a", "b"):
        make_adapter(project / name)
    message = config_error(tunegate_table(project, "[tool.tunegate.ablation]\n" + "\n".join(lines) + "\n"))
    assert expected in message


def test_meteor_without_wordnet_is_a_config_error_with_the_reason(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunegate.metrics

    monkeypatch.setattr(tunegate.metrics, "meteor_available", lambda: (False, "no WordNet found in /nowhere."))
    message = config_error(tunegate_table(project, 'metrics = ["rougeL", "meteor"]\nprimary_metric = "rougeL"\n'))
    assert "metrics has 'meteor', which cannot run here. no WordNet found in /nowhere." in message


# --- beyond quality: likelihood metrics, safety probes, latency --------------------------------


def test_likelihood_metrics_are_scored_but_never_gated_the_wrong_way(project: Path) -> None:
    config = load_config(tunegate_table(project, 'metrics = ["rougeL", "loglik", "perplexity"]\n'))
    assert config.gain_metrics == ("rougeL", "loglik")  # perplexity: lower is better, left out by default
    for extra in ('gain_metrics = ["perplexity"]\n', 'regression_metrics = ["perplexity"]\n'):
        message = config_error(tunegate_table(project, 'metrics = ["rougeL", "perplexity"]\n' + extra))
        assert "where lower is better" in message and "Gate on 'loglik'" in message
    message = config_error(tunegate_table(project, 'metrics = ["rougeL", "perplexity"]\n'
                                                   "[tool.tunegate.thresholds.base]\nperplexity = 10\n"))
    assert "thresholds.base.perplexity: a threshold is a minimum" in message


def test_safety_and_latency_keys(project: Path) -> None:
    from tunegate.safety import BUNDLED_PROBES

    config = load_config(tunegate_table(project, 'safety_probes = "bundled"\nmax_latency_overhead_pct = 25\n'))
    assert config.safety_probes == BUNDLED_PROBES and BUNDLED_PROBES.is_file()
    assert config.max_latency_overhead_pct == 25.0 and config.safety_max_drop == 0.0
    assert load_config(tunegate_table(project)).safety_probes is None
    assert "safety_probes" in config_error(tunegate_table(project, 'safety_probes = "nope.jsonl"\n'))
    assert "safety_max_drop must be a share" in config_error(tunegate_table(project, "safety_max_drop = 1.5\n"))
    assert "max_latency_overhead_pct must be a percentage" in config_error(
        tunegate_table(project, "max_latency_overhead_pct = -5\n"))


def test_merge_adapter_is_a_boolean_that_reaches_the_decoding(project: Path) -> None:
    config = load_config(tunegate_table(project, "merge_adapter = true\n"))
    assert config.merge_adapter is True and config.decoding.merge_adapter is True
    assert load_config(tunegate_table(project)).decoding.merge_adapter is False
    assert "merge_adapter must be bool" in config_error(tunegate_table(project, 'merge_adapter = "yes"\n'))
    assert "max_new_tokens must be int" in config_error(tunegate_table(project, "max_new_tokens = true\n"))
