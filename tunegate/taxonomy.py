"""Failure taxonomy: why a weak answer is weak, as labels with evidence (issue 8, part 5).

A score says how far an answer is from its reference; a label says what went wrong, so the
report can count failures per mode and show the worst example of each. Labels are not exclusive
(a loop that runs into the token limit is both ``repetition_loop`` and ``over_generation``):

- ``under_generation``: empty, or much shorter than the reference.
- ``over_generation``: cut off at max_new_tokens, or much longer than the reference.
- ``repetition_loop``: a block of words (or CJK characters) repeated back to back, or one
  sentence over and over.
- ``likely_hallucination``: numbers, amounts, ids, links or capitalised names that neither the
  prompt nor the reference (nor the system prompt) contains.
- ``format_error``: chat-template tokens or role prefixes left in the answer, JSON that does not
  parse where JSON is expected, required text missing, forbidden text present.

Every rule is a cheap, deterministic text heuristic; each threshold says why it sits where it
does. Lengths count *units*: one CJK character, or one run of other letters and digits, so a
Chinese answer and its Chinese reference are measured alike ("退款已处理" is 5 units, "refund
processed" 2).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tunegate.data import Sample
from tunegate.inference import Generation

__all__ = [
    "LABELS", "Diagnosis", "Failure", "FailureCounts", "FormatExpectations", "classify", "diagnose",
    "failure_counts", "units", "worst_examples",
]

LABELS = ("under_generation", "over_generation", "repetition_loop", "likely_hallucination", "format_error")

UNDER_GENERATION_RATIO = 1 / 3
"""An answer under a third of the reference's length is "much shorter": a right but terse answer
to a support question rarely drops below half the reference, so a third flags only answers that
leave most of it out."""

MIN_REFERENCE_UNITS = 8
"""The shorter-than-reference rule needs a reference of 8+ units: against "Yes, it ships today."
a ratio says nothing (an empty answer is under-generation whatever the reference)."""

OVER_GENERATION_RATIO = 3.0
"""An answer over 3x the reference's length is "much longer": past what added courtesy or detail
explains, it is usually rambling, a second answer, or an invented dialogue turn."""

MIN_OVER_UNITS = 30
"""...and at least 30 units long, so that 9 words against a 3-word reference is not flagged."""

LOOP_MIN_COPIES = 3
"""A block must occur 3+ times back to back: twice is how people stress things ("very, very"),
three identical copies in a row is how a decoder loops."""

LOOP_MIN_UNITS = 8
"""...and the repeated run must cover 8+ units, so "no, no, no" is not a loop while "please contact
support" x3 (9 units) and "请联系客服" x3 (15) are."""

LOOP_MAX_PERIOD = 50
"""Blocks of up to 50 units are searched (about two sentences); longer repeats are caught as
repeated sentences. Keeps the search at 50 passes over the answer."""

REPEATED_SENTENCE_MIN_COUNT = 3
"""One sentence (or line) occurring 3+ times anywhere in the answer is a loop even when other
text sits between the copies."""

REPEATED_SENTENCE_MIN_UNITS = 3
"""...counting only sentences of 3+ units, so a repeated "OK." or list marker does not count."""

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # kana + ideographs
_UNIT_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_SENTENCE_END_RE = re.compile(r"[\n.!?;。！？；]+")
_TEMPLATE_TOKEN_RE = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>")
_ROLE_PREFIX_RE = re.compile(
    r"^[ \t>*#]*(assistant|user|human|system|助手|用户|系统)[ \t*]*[:：]", re.IGNORECASE | re.MULTILINE
)
_LINK_RE = re.compile(r"https?://[^\s<>\"'，。）)]+|[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ID_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*(?![A-Za-z0-9])")
_NUMBER_RE = re.compile(r"([$€£¥₹]\s?)?(?<![A-Za-z0-9.,])(\d+(?:[.,]\d+)*)(\s?%)?")
_ENUMERATOR_RE = re.compile(r"^[ \t]*(\d+)[.)][ \t]", re.MULTILINE)  # "1. " opening a list item
_WORD_RE = re.compile(rf"[^\W\d_{_CJK}]+(?:['’][^\W\d_{_CJK}]+)*")
_NOT_NAMES = {"i", "i'm", "i’m", "i'll", "i’ll", "i've", "i’ve", "i'd", "i’d", "ok"}
_OPENERS = " \t\"'“‘([*_#>•-"
_SENTENCE_ENDS = ".!?:;\n。！？：；"


def units(text: str) -> list[str]:
    """The length units of ``text``, lowercased: each CJK character, each run of other letters/digits."""
    return _UNIT_RE.findall(unicodedata.normalize("NFKC", text).lower())


@dataclass(frozen=True, slots=True)
class Failure:
    """One way an answer failed, with evidence a reader can check against the answer."""

    label: str
    evidence: str
    severity: float  # larger is worse; comparable within one label only (it orders worst_examples)

    def __str__(self) -> str:
        return f"{self.label}: {self.evidence}"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The failures found in one answer (one sample, one mode); none found means none detected."""

    sample_id: str
    mode: str
    text: str
    failures: tuple[Failure, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(failure.label for failure in self.failures)

    def failure(self, label: str) -> Failure | None:
        return next((failure for failure in self.failures if failure.label == label), None)

    def __str__(self) -> str:
        found = "; ".join(str(failure) for failure in self.failures) or "no failure detected"
        return f"{self.mode}/{self.sample_id}: {found}"


@dataclass(frozen=True, slots=True)
class FailureCounts:
    """How many of one mode's classified answers carry each label."""

    mode: str
    answers: int
    counts: dict[str, int]  # every label in LABELS, in that order

    def __str__(self) -> str:
        found = ", ".join(f"{n} {label}" for label, n in self.counts.items() if n) or "no failures"
        return f"{self.mode}: {found} in {self.answers} answers"


@dataclass(frozen=True, slots=True)
class FormatExpectations:
    """What a well-formed answer looks like; template tokens and role prefixes are always errors.

    Args:
        json_tag: samples carrying this tag must answer with one JSON value (a ```json fence
            around it is accepted); None turns the tag off.
        json_always: every answer must be JSON.
        sample_markers: check each sample's ``must_include`` / ``must_not_include`` (case-insensitive).
        required_markers: text every answer must contain, e.g. a mandated disclaimer.
    """

    json_tag: str | None = "json"
    json_always: bool = False
    sample_markers: bool = True
    required_markers: tuple[str, ...] = ()


def classify(
    sample: Sample,
    generation: Generation,
    *,
    expectations: FormatExpectations = FormatExpectations(),
    context: Sequence[str] = (),
) -> tuple[Failure, ...]:
    """Every failure label that applies to ``generation`` as an answer to ``sample``, in LABELS order.

    Args:
        sample: the eval sample (prompt, reference, system, history, tags, markers).
        generation: one mode's answer to it.
        expectations: what a well-formed answer looks like.
        context: more text the model was given, e.g. that mode's system prompt: content found
            there is not a hallucination.
    """
    text = generation.text
    answer_units, reference_units = units(text), units(sample.reference)
    sources = [sample.prompt, sample.reference, sample.system or "", *context,
               *(message for _, message in sample.history)]
    found = [
        _under_generation(answer_units, reference_units),
        _over_generation(answer_units, reference_units, generation, sample.allow_truncation),
        _repetition_loop(text, answer_units),
        _likely_hallucination(text, sources),
        _format_error(text, sample, expectations),
    ]
    return tuple(failure for failure in found if failure is not None)


def diagnose(
    samples: Sequence[Sample],
    generations: Sequence[Generation],
    *,
    expectations: FormatExpectations = FormatExpectations(),
    context: Sequence[str] = (),
    sample_ids: Collection[str] | None = None,
) -> list[Diagnosis]:
    """`classify` over one mode's answers, aligned with ``samples``.

    Args:
        sample_ids: classify only these samples (e.g. the weak ones: primary metric under a
            threshold, or a failed sample gate); None classifies every answer.

    Raises:
        ValueError: ``generations`` is not one mode's answers in the samples' order.
    """
    if len(samples) != len(generations):
        raise ValueError(f"{len(samples)} samples but {len(generations)} generations")
    diagnoses = []
    for sample, generation in zip(samples, generations):
        if generation.sample_id != sample.id or generation.mode != generations[0].mode:
            raise ValueError(
                f"generation {generation.mode}/{generation.sample_id} is not aligned with sample {sample.id}")
        if sample_ids is None or sample.id in sample_ids:
            failures = classify(sample, generation, expectations=expectations, context=context)
            diagnoses.append(Diagnosis(sample.id, generation.mode, generation.text, failures))
    return diagnoses


def failure_counts(diagnoses: Iterable[Diagnosis]) -> dict[str, FailureCounts]:
    """Label counts per mode (modes in order of first appearance); an answer counts once per label."""
    answers: Counter[str] = Counter()
    counts: dict[str, dict[str, int]] = {}
    for diagnosis in diagnoses:
        answers[diagnosis.mode] += 1
        per_label = counts.setdefault(diagnosis.mode, dict.fromkeys(LABELS, 0))
        for label in set(diagnosis.labels):
            per_label[label] += 1
    return {mode: FailureCounts(mode, answers[mode], per_label) for mode, per_label in counts.items()}


def worst_examples(diagnoses: Iterable[Diagnosis], n: int = 3) -> dict[str, list[Diagnosis]]:
    """Up to ``n`` diagnoses per label, most severe first (ties by mode, then sample id); every label is a key."""
    ranked: dict[str, list[tuple[float, str, str, Diagnosis]]] = {label: [] for label in LABELS}
    for diagnosis in diagnoses:
        for failure in diagnosis.failures:
            ranked[failure.label].append((-failure.severity, diagnosis.mode, diagnosis.sample_id, diagnosis))
    return {label: [entry[-1] for entry in sorted(entries, key=lambda e: e[:3])[:n]]
            for label, entries in ranked.items()}


# --- the rules ---------------------------------------------------------------------------------


def _under_generation(answer: list[str], reference: list[str]) -> Failure | None:
    if not answer:
        return Failure("under_generation", "empty answer", 1.0)
    ratio = len(answer) / max(len(reference), 1)
    if len(reference) >= MIN_REFERENCE_UNITS and ratio < UNDER_GENERATION_RATIO:
        return Failure("under_generation", f"{len(answer)} units vs {len(reference)} in the reference "
                       f"({ratio:.2f}x, under {UNDER_GENERATION_RATIO:.2f}x)", 1.0 - ratio)
    return None


def _over_generation(answer: list[str], reference: list[str], generation: Generation,
                     allow_truncation: bool) -> Failure | None:
    ratio = len(answer) / max(len(reference), 1)
    long = len(answer) >= MIN_OVER_UNITS and ratio > OVER_GENERATION_RATIO
    cut = generation.finish_reason == "length" and not allow_truncation
    if not (long or cut):
        return None
    reasons = [f"hit max_new_tokens ({generation.output_tokens} tokens, finish_reason=length)"] if cut else []
    if long:
        reasons.append(f"{len(answer)} units vs {len(reference)} in the reference "
                       f"({ratio:.1f}x, over {OVER_GENERATION_RATIO:.0f}x)")
    return Failure("over_generation", "; ".join(reasons), ratio)


def _repetition_loop(text: str, answer: list[str]) -> Failure | None:
    """A block repeated back to back (LOOP_*), or one sentence repeated (REPEATED_SENTENCE_*)."""
    found: list[tuple[float, str]] = []
    block = _back_to_back_block(answer)
    if block is not None:
        start, period, covered = block
        shown = _shorten(_join(answer[start:start + period]))
        found.append((covered / len(answer), f'"{shown}" repeated {covered // period}x back to back '
                                             f"({covered} of {len(answer)} units)"))
    sentences = Counter(tuple(units(part)) for part in _SENTENCE_END_RE.split(text))
    for sentence, count in sentences.most_common():
        if count < REPEATED_SENTENCE_MIN_COUNT:
            break
        if len(sentence) >= REPEATED_SENTENCE_MIN_UNITS:
            found.append((count * len(sentence) / len(answer),
                          f'sentence "{_shorten(_join(list(sentence)))}" occurs {count} times'))
            break
    if not found:
        return None
    return Failure("repetition_loop", "; ".join(evidence for _, evidence in found), max(s for s, _ in found))


def _back_to_back_block(answer: list[str]) -> tuple[int, int, int] | None:
    """(start, period, units covered) of the longest run where a block of ``period`` units repeats
    at least LOOP_MIN_COPIES times in a row covering LOOP_MIN_UNITS; the shortest period wins ties."""
    best: tuple[int, int, int] | None = None
    for period in range(1, min(LOOP_MAX_PERIOD, len(answer) // LOOP_MIN_COPIES) + 1):
        run = 0
        for i in range(len(answer) - period):
            run = run + 1 if answer[i] == answer[i + period] else 0
            covered = run + period
            if run and covered // period >= LOOP_MIN_COPIES and covered >= LOOP_MIN_UNITS \
                    and (best is None or covered > best[2]):
                best = (i - run + 1, period, covered)
    return best


def _likely_hallucination(text: str, sources: Sequence[str]) -> Failure | None:
    """Links, ids, numbers and mid-sentence capitalised names in the answer that no source contains.

    Support is lenient: numbers match by value ("$64.90" is supported by "64.9 dollars"), ids
    ignoring case, "-" and "_", links and names ignoring case. Missed: numbers written in words
    or Chinese numerals, paraphrased facts ("within a week"), Chinese names (no capitals).
    False alarms: correct arithmetic (a total the model added up), generic capitalised terms
    ("Customer Service"), a name the model may rightly know (a product of the company).
    """
    text = unicodedata.normalize("NFKC", text)
    source = unicodedata.normalize("NFKC", "\n".join(sources))
    source_lower = source.lower()
    compact_source = re.sub(r"[\s_-]+", "", source).upper()
    source_numbers = {_number_value(m.group(2)) for m in _NUMBER_RE.finditer(source)}
    source_words = set(_WORD_RE.findall(source_lower))
    unsupported: list[str] = []
    blank = list(text)  # matched spans are blanked so a number inside an id is not counted twice

    def take(match: re.Match[str]) -> None:
        blank[match.start():match.end()] = " " * (match.end() - match.start())

    for match in _LINK_RE.finditer(text):
        link = match.group().rstrip(".,;:")
        if link.lower() not in source_lower:
            unsupported.append(f'"{link}" (link)')
        take(match)
    for match in _ID_RE.finditer("".join(blank)):
        if any(char.isdigit() for char in match.group()):
            if re.sub(r"[_-]", "", match.group()).upper() not in compact_source:
                unsupported.append(f'"{match.group()}" (id)')
            take(match)
    remaining = "".join(blank)
    enumerators = {m.start(1) for m in _ENUMERATOR_RE.finditer(remaining)}
    for match in _NUMBER_RE.finditer(remaining):
        if match.start(2) in enumerators or _number_value(match.group(2)) in source_numbers:
            continue
        kind = "amount" if match.group(1) else "percentage" if match.group(3) else "number"
        unsupported.append(f'"{match.group().strip()}" ({kind})')
    unsupported += [f'"{name}" (name)' for name in _unsupported_names(remaining, source_words)]
    if not unsupported:
        return None
    shown = ", ".join(unsupported[:5]) + (f" and {len(unsupported) - 5} more" if len(unsupported) > 5 else "")
    return Failure("likely_hallucination", f"not in prompt or reference: {shown}", float(len(unsupported)))


def _unsupported_names(text: str, source_words: set[str]) -> list[str]:
    """Runs of capitalised words not opening a sentence, with a word no source contains."""
    runs: list[list[str]] = []
    run_end = -1
    for match in _WORD_RE.finditer(text):
        word = match.group()
        if not word[0].isupper() or word.lower() in _NOT_NAMES or _opens_sentence(text, match.start()):
            run_end = -1
            continue
        if run_end >= 0 and not text[run_end:match.start()].strip():
            runs[-1].append(word)  # "Sarah Jones" is one name
        else:
            runs.append([word])
        run_end = match.end()
    names = [" ".join(run) for run in runs if any(word.lower() not in source_words for word in run)]
    return list(dict.fromkeys(names))


def _opens_sentence(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens the text, a line, a sentence or a list item."""
    i = start - 1
    while i >= 0 and text[i] in _OPENERS:
        i -= 1
    return i < 0 or text[i] in _SENTENCE_ENDS


def _number_value(digits: str) -> str:
    """A number's value as text: "1,234.50" -> "1234.5", "64.90" -> "64.9", "007" -> "7"."""
    plain = digits.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", digits) else digits
    try:
        return format(Decimal(plain).normalize(), "f")
    except InvalidOperation:
        return digits  # "1.234,5" and other shapes: compare as written


def _format_error(text: str, sample: Sample, expectations: FormatExpectations) -> Failure | None:
    problems = [f'chat-template token "{token}"' for token in dict.fromkeys(_TEMPLATE_TOKEN_RE.findall(text))]
    problems += [f'role prefix "{match.group().strip()}"' for match in _ROLE_PREFIX_RE.finditer(text)]
    if expectations.json_always or (expectations.json_tag is not None and expectations.json_tag in sample.tags):
        body = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text)
        try:
            json.loads(body)
        except ValueError as error:
            problems.append(f"expected JSON, does not parse ({error})")
    lowered = text.lower()
    required = [*expectations.required_markers, *(sample.must_include if expectations.sample_markers else ())]
    problems += [f'missing required text "{marker}"' for marker in required if marker.lower() not in lowered]
    if expectations.sample_markers:
        problems += [f'contains forbidden text "{marker}"' for marker in sample.must_not_include
                     if marker.lower() in lowered]
    if not problems:
        return None
    return Failure("format_error", "; ".join(problems), float(len(problems)))


def _join(tokens: list[str]) -> str:
    """Units back into text: CJK characters run together, other units are space-separated."""
    out = ""
    for token in tokens:
        cjk = bool(re.match(f"[{_CJK}]", token))
        out += token if not out or cjk or re.match(f"[{_CJK}]", out[-1]) else " " + token
    return out


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
