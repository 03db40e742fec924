"""Shared by the tests of tunegate/report/: score tables, hostile inputs, and markup checks.

Score tables in the long format (`score_table`, `paired_table`) with their answers (`paired_run`),
attacks from a model or an eval set (`hostile_run`), and `assert_only_our_markup`, which parses
HTML as a browser's tokenizer would and fails on any tag, handler or script that is not ours.
tests/conftest.py registers this module for pytest's assertion rewriting.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd

from tunegate.data import Sample
from tunegate.gates import GateResult
from tunegate.inference import Generation
from tunegate.report.assets import _SCRIPT
from tunegate.scores import COLUMNS


HOSTILE = "<script>alert(1)</script>"
HOSTILE_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

VALUES = {
    ("finetuned", "rougeL"): [0.6, 0.8, 0.7, 0.9],
    ("finetuned", "rouge1"): [0.7, 0.9, 0.8, 1.0],
    ("prompt_eng", "rougeL"): [0.2, 0.4, 0.3, 0.3],
    ("prompt_eng", "rouge1"): [0.3, 0.5, 0.4, 0.4],
}


def score_table() -> pd.DataFrame:
    rows = [
        (f"s{i}", mode, metric, value)
        for (mode, metric), values in VALUES.items()
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def gates() -> list[GateResult]:
    return [
        GateResult("threshold[finetuned-rougeL]", True, "finetuned ROUGE-L mean 0.750 >= threshold 0.600"),
        GateResult(f"threshold[{HOSTILE}]", False, f"model said {HOSTILE} & \"quoted\""),
    ]


# What our own HTML may contain; a hostile string that escaped `esc` shows up as another tag
# (script, img, textarea, iframe...), an on* attribute, or a second script.
OUR_TAGS = {"style", "div", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "code", "i", "b", "small",
            "br", "img", "script", "span", "label", "select", "option", "button", "input", "pre"}


class Markup(HTMLParser):
    """Tags, attributes and script bodies of an HTML string, parsed as a browser's tokenizer would."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.rows: list[dict[str, object]] = []  # the samples table's rows: attrs, id cell text, badges
        self._cell: str | None = None
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script":
            self.scripts.append("")
            self._in_script = True
        elif tag == "tr" and "tg-row" in (attributes.get("class") or ""):
            self.rows.append({"attrs": attributes, "id": "", "badges": []})
        elif tag == "td" and attributes.get("class") == "tg-id":
            self._cell = "id"
        elif tag == "span" and "tg-badge" in (attributes.get("class") or "") and self.rows:
            self._cell = "badge"
            self.rows[-1]["badges"].append("")  # type: ignore[union-attr]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"
        if tag in ("td", "span"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        elif self._cell == "id":
            self.rows[-1]["id"] += data  # type: ignore[operator]
        elif self._cell == "badge":
            self.rows[-1]["badges"][-1] += data  # type: ignore[index]


def assert_only_our_markup(html: str, *, scripts: int = 1) -> Markup:
    __tracebackhide__ = True
    markup = Markup(html)
    assert markup.scripts == [_SCRIPT] * scripts, "a script other than ours is in the HTML"
    assert {tag for tag, _ in markup.tags} <= OUR_TAGS, {tag for tag, _ in markup.tags} - OUR_TAGS
    handlers = [(tag, name) for tag, attrs in markup.tags for name in attrs if name.startswith("on")]
    assert not handlers, handlers
    for tag, attrs in markup.tags:
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,"), attrs.get("src")
        assert "href" not in attrs and (tag != "script" or "src" not in attrs)  # nothing external
    return markup


ATTACKS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</textarea><iframe src=javascript:alert(1)>",
    "' onmouseover='alert(1)",
    "</td></tr></table><script>alert(2)</script>",
]
METRIC_ATTACK = 'metric"><img src=x onerror=alert(3)>'  # a metric name reaches labels, options and titles


def hostile_run(n_extra: int = 0) -> tuple[list[Sample], dict[str, list[Generation]], pd.DataFrame]:
    """Samples whose ids, prompts, references and answers are all attacks, scored in three modes."""
    samples, generations, rows = [], {"base": [], "prompt_eng": [], "finetuned": []}, []
    for i, attack in enumerate(ATTACKS + [f"plain {k}" for k in range(n_extra)]):
        sample_id = f"id{i} {attack}"
        samples.append(Sample(id=sample_id, prompt=f"prompt {attack}", reference=f"reference {attack}"))
        for shift, mode in enumerate(generations):
            generations[mode].append(Generation(sample_id, mode, f"{mode} says {attack}", "length" if i == 1 else "stop",
                                                10, 20, 0.1))
            rows += [(sample_id, mode, "rougeL", (i * 7 % 10) / 10 * (shift + 1) / 3),
                     (sample_id, mode, "judge_overall", float(1 + (i + shift) % 5)),
                     (sample_id, mode, METRIC_ATTACK, (i % 3) / 2)]
    return samples, generations, pd.DataFrame(rows, columns=COLUMNS)


def html_text(html: str) -> str:
    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return "".join(parser.parts)


PAIRED = {  # sample -> (finetuned, prompt_eng); s4 has no prompt_eng answer, so it is not paired
    "rougeL": {"s0": (0.6, 0.2), "s1": (0.4, 0.4), "s2": (0.1, 0.5), "s3": (0.9, 0.3), "s4": (0.7, None)},
    "judge_overall": {"s0": (5.0, 3.0), "s1": (2.0, 4.0), "s2": (3.0, 3.0), "s3": (1.0, 2.0), "s4": (4.0, None)},
}


def paired_table() -> pd.DataFrame:
    rows = [(sample_id, mode, metric, value)
            for metric, per_sample in PAIRED.items()
            for sample_id, values in per_sample.items()
            for mode, value in zip(("finetuned", "prompt_eng"), values) if value is not None]
    return pd.DataFrame(rows, columns=COLUMNS)


def paired_run() -> tuple[list[Sample], dict[str, list[Generation]]]:
    samples = [Sample(id=f"s{i}", prompt=f"prompt {i}", reference=f"reference {i}") for i in range(5)]
    generations = {mode: [Generation(s.id, mode, f"{mode} answer {s.id}", "stop", 5, 5, 0.1) for s in samples
                          if mode == "finetuned" or s.id != "s4"] for mode in ("prompt_eng", "finetuned")}
    return samples, generations
