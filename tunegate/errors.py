"""Every error tunegate raises on purpose, one type per family.

    TunegateError                 base: catch this to catch anything tunegate means to say
    ├── ConfigError               [tool.tunegate] / command-line values (a pytest usage error)
    ├── EvalSetError              the eval set file: JSON, encoding, fields, ids
    ├── ModelError                the base model directory or the demo model cache
    ├── AdapterError              the adapter directory (missing files, wrong base)
    ├── MetricError               a scorer that cannot run (missing local model, bad input)
    ├── BaselineError             a stored baseline in baselines/ that cannot be read
    ├── TrainingStateError        a trainer_state.json: missing, invalid JSON, no eval loss logged
    ├── AblationError             a sweep of adapter runs or an ablation CSV: unreadable, duplicate values
    └── JudgeError                a judge that cannot go on (bad credentials, exhausted quota, no server)

Each message is one paragraph that names the file, line or field, what was found, and the fix,
so the plugin can show it as-is instead of a traceback.
"""

from __future__ import annotations


class TunegateError(Exception):
    """Base class: an error whose message is written for the user, not for a debugger."""


class ConfigError(TunegateError):
    """A configuration key, value or path is wrong."""


class EvalSetError(TunegateError):
    """The eval set cannot be read as samples."""


class ModelError(TunegateError):
    """The base model (or the embedded demo model) cannot be found or loaded."""


class AdapterError(TunegateError):
    """The adapter directory is missing, incomplete, or does not fit the base model."""


class MetricError(TunegateError):
    """A scorer cannot run: a missing local scoring model or inconsistent inputs."""


class BaselineError(TunegateError):
    """A stored baseline snapshot is not a tunegate baseline (hand-edited, truncated, or too old)."""


class TrainingStateError(TunegateError):
    """A trainer_state.json cannot be read as a train and validation loss curve."""


class AblationError(TunegateError):
    """A sweep of adapter runs or an ablation results file cannot be read as one controlled experiment."""


class JudgeError(TunegateError):
    """The judge cannot go on: every further call would fail the same way (credentials, quota, model)."""
