"""How the report names things: escaped text, metric labels, modes and metrics in display order.

`esc` is the one escaping function of the report: everything from a model or an eval set goes
through it (quotes too, so it is safe inside attributes). The underscored helpers are shared by
the report's modules and are not part of `tunegate.report`'s API.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import pandas as pd

from tunegate.inference import MODES
from tunegate.judge import JUDGE_METRICS
from tunegate.scores import METRIC_LABELS


def esc(value: Any) -> str:
    """HTML-escape anything shown in the report (quotes too, for attribute safety)."""
    return html.escape(str(value), quote=True)


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _is_judge(metric: str) -> bool:
    return metric in JUDGE_METRICS


def _modes(present: Iterable[str]) -> list[str]:
    """Modes in MODES order, then any other mode names alphabetically."""
    present = set(present)
    return [m for m in MODES if m in present] + sorted(present - set(MODES))


def _metrics(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["metric"])) if len(table) else []
