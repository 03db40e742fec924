"""LLM-as-judge: requests, prompts, strict parsing, cache and accounting; backends live elsewhere.

Three kinds of judgement, from seed 000 and its follow-ups:

    reference  the answer graded on accuracy, completeness and conciseness (1-5) against the reference;
    blind      the same rubric with no reference shown (does the judge understand a good answer?);
    pairwise   finetuned vs an opponent answer side by side, asked twice with the positions swapped,
               so a judge that prefers whatever comes first cancels out.

A backend (an OpenAI-compatible endpoint in `tunegate.judge_remote`, a local model scoring from
token probabilities in `tunegate.judge_local`) turns `JudgeRequest`s into `JudgeReply`s. This
module does what must not differ between backends: the rubric (a versioned file), delimiting
untrusted text, the strict parse (an unparseable reply, a score out of range or a refusal is a
judge error, never a score), the on-disk cache (one atomic JSON file per judgement, written the
moment it arrives, errors never stored), and the accounting of calls, tokens and cost.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tunegate.cache import DiskCache, fingerprint

KINDS = ("reference", "blind", "pairwise")
DIMENSIONS = ("accuracy", "completeness", "conciseness")
SCORE_MIN, SCORE_MAX = 1, 5
WINNERS = ("A", "B", "tie")
RUBRIC_FILE = Path(__file__).parent / "prompts" / "judge_rubric_v1.md"
_FRAMING_VERSION = "framing-v1"  # bump when the code-side framing below changes
_METRIC_PREFIX = {"reference": "judge", "blind": "blind"}
BLIND_INSTRUCTION = "There is no reference answer: judge from the question alone. "  # every backend's blind framing


def metric_names(kind: str) -> tuple[str, ...]:
    """Score-table metrics of a kind: `judge_accuracy`, ..., `judge_overall` (the seed's mean of three)."""
    prefix = _METRIC_PREFIX[kind]
    return tuple(f"{prefix}_{d}" for d in DIMENSIONS) + (f"{prefix}_overall",)


JUDGE_METRICS = metric_names("reference") + metric_names("blind")


# -- configuration ------------------------------------------------------------------------------

BACKENDS = ("none", "local", "openai")
STRUCTURED_OUTPUT = ("auto", "json_schema", "json_object", "none")


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    """`[tool.tunegate.judge]`: which judge, what it judges, and how hard it may be pushed."""

    backend: str = "none"  # "local": a transformers model, no network; "openai": any OpenAI-compatible endpoint
    model: str = "base"  # local: "base" (the run's base model, its loaded weights shared) or a model dir; openai: a name
    kinds: tuple[str, ...] = KINDS
    modes: tuple[str, ...] = ("base", "prompt_eng", "finetuned")  # modes whose answers get reference/blind scores
    pairwise_opponent: str = "prompt_eng"  # finetuned is compared side by side with this mode
    base_url: str | None = None  # openai: e.g. "http://localhost:8000/v1"; None: the openai package's default
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable holding the key (never the key); None: a keyless local server
    timeout_s: float = 60.0
    max_retries: int = 6
    concurrency: int = 4
    structured_output: str = "auto"
    max_output_tokens: int = 300
    error_budget: float = 0.05  # share of judgements per kind that may fail before the judge gate fails
    min_mass: float = 0.25  # local: least probability the score tokens must get for a reply to count
    batch_size: int = 8  # local: prompts per forward pass
    price_input_per_mtok: float | None = None  # cost accounting, in your currency per million tokens
    price_output_per_mtok: float | None = None
    pairwise_min_net_win: float | None = None  # gate: (wins - losses) / n must exceed this, CI included

    @property
    def enabled(self) -> bool:
        return self.backend != "none"

    def metrics(self) -> tuple[str, ...]:
        """The score-table metrics this judge adds (reference and blind kinds)."""
        if not self.enabled:
            return ()
        return tuple(m for kind in self.kinds if kind != "pairwise" for m in metric_names(kind))


# -- what a backend receives and returns --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One judgement to make.

    For reference and blind, `answer` is the graded answer of `mode`. For pairwise, `answer` is
    shown as A and `answer_b` as B; `order` says which is the candidate ("candidate_first": A).
    """

    kind: str
    sample_id: str
    mode: str
    question: str
    reference: str | None
    answer: str
    answer_b: str = ""
    order: str = ""


@dataclass(frozen=True, slots=True)
class JudgeReply:
    """A backend's answer to one request: scores (or a pairwise winner), or a judge error."""

    scores: Mapping[str, float] = field(default_factory=dict)  # dimension -> 1..5 (reference, blind)
    winner: str | None = None  # "A", "B" or "tie" (pairwise)
    reasoning: str = ""
    error: str | None = None  # why this reply is not a judgement; never cached
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0  # HTTP requests sent for it: retries and response_format fallbacks included (0: local or cached)
    latency_s: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class JudgeBackend(Protocol):
    """What a judge backend provides. `identity` goes into cache keys and the report, never a secret."""

    identity: str

    def judge(self, requests: Sequence[JudgeRequest]) -> Iterator[tuple[int, JudgeReply]]:
        """Yield (index into `requests`, reply) as each judgement completes, in any order.

        Yielding one at a time lets the caller cache each judgement the moment it exists, so a
        killed run loses at most the calls in flight. A fault that makes every further call
        pointless (bad credentials, exhausted quota) raises `tunegate.errors.JudgeError`.
        """
        ...


class JudgeParseError(ValueError):
    """A judge reply that is not a valid judgement (the message says why, for the error list)."""


# -- prompts ------------------------------------------------------------------------------------


@functools.cache
def rubric() -> str:
    """The rubric file's text, read once per process (every prompt and every cache key uses it)."""
    return RUBRIC_FILE.read_text(encoding="utf-8").strip()


@functools.cache
def prompt_version() -> str:
    """Changes whenever the rubric file or the framing changes, so cached judgements are redone."""
    digest = hashlib.sha256(f"{_FRAMING_VERSION}\n{rubric()}".encode()).hexdigest()[:12]
    return f"{RUBRIC_FILE.stem}-{digest}"


def block(label: str, text: str) -> str:
    """Untrusted text between markers it cannot forge: the nonce is a hash of the text itself."""
    nonce = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"<<<{label} {nonce}>>>\n{text}\n<<<END {label} {nonce}>>>"


def request_blocks(request: JudgeRequest) -> str:
    """The data part of a judge prompt: question, reference (unless blind), and the answer(s)."""
    parts = [block("QUESTION", request.question)]
    if request.kind != "blind" and request.reference is not None:
        parts.append(block("REFERENCE ANSWER", request.reference))
    if request.kind == "pairwise":
        parts += [block("ANSWER A", request.answer), block("ANSWER B", request.answer_b)]
    else:
        parts.append(block("ANSWER", request.answer))
    return "\n\n".join(parts)


def json_messages(request: JudgeRequest) -> list[dict[str, str]]:
    """Chat messages for a judge that answers in JSON (remote backends)."""
    if request.kind == "pairwise":
        task = (
            "Two answers to the same question follow, A and B. Using the rubric, decide which answer is better "
            'overall. Reply with only a JSON object: {"winner": "A" | "B" | "tie", "reasoning": "<one sentence>"}.'
        )
    else:
        fields_ = ", ".join(f'"{d}": <integer 1-5>' for d in DIMENSIONS)
        task = (
            (BLIND_INSTRUCTION if request.kind == "blind" else "")
            + f'Reply with only a JSON object: {{{fields_}, "reasoning": "<one sentence: the main deduction>"}}.'
        )
    return [
        {"role": "system", "content": f"{rubric()}\n\n{task}"},
        {"role": "user", "content": request_blocks(request)},
    ]


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON schema of a reply, for servers that support structured output."""
    if kind == "pairwise":
        properties: dict[str, Any] = {"winner": {"type": "string", "enum": list(WINNERS)}, "reasoning": {"type": "string"}}
    else:
        properties = {d: {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX} for d in DIMENSIONS}
        properties["reasoning"] = {"type": "string"}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


# -- strict parsing -----------------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i won'?t|i am unable|i'?m unable|"
    r"as an ai|i must decline|unable to comply)",
    re.IGNORECASE,
)


def _json_object(text: str) -> dict[str, Any]:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    if _REFUSAL.match(stripped):
        raise JudgeParseError(f"refusal: {clip(stripped)}")
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        raise JudgeParseError(f"not a JSON object: {clip(stripped)}") from None
    if not isinstance(value, dict):
        raise JudgeParseError(f"not a JSON object: {clip(stripped)}")
    return value


def parse_scores(text: str) -> tuple[dict[str, float], str]:
    """(dimension -> integer score, reasoning) from a judge's JSON reply, or JudgeParseError.

    Strict: the whole reply is one JSON object (a ```json fence around it is tolerated); every
    dimension is present and an integer from 1 to 5 (4.0 is accepted, 4.5 and "4" are not).
    """
    value = _json_object(text)
    scores = {}
    for dimension in DIMENSIONS:
        if dimension not in value:
            raise JudgeParseError(f"no {dimension!r} in the reply: {clip(text)}")
        score = value[dimension]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or score != int(score):
            raise JudgeParseError(f"{dimension} is {score!r}, not an integer 1-5")
        if not SCORE_MIN <= score <= SCORE_MAX:
            raise JudgeParseError(f"{dimension} = {score} is out of range {SCORE_MIN}-{SCORE_MAX}")
        scores[dimension] = float(score)
    reasoning = value.get("reasoning", "")
    return scores, reasoning if isinstance(reasoning, str) else json.dumps(reasoning)


def parse_winner(text: str) -> tuple[str, str]:
    """("A" | "B" | "tie", reasoning) from a pairwise JSON reply, or JudgeParseError."""
    value = _json_object(text)
    winner = value.get("winner")
    if not isinstance(winner, str) or winner.strip().upper() not in ("A", "B", "TIE"):
        raise JudgeParseError(f"winner is {winner!r}, not 'A', 'B' or 'tie'")
    normalised = winner.strip().upper()
    reasoning = value.get("reasoning", "")
    return ("tie" if normalised == "TIE" else normalised), reasoning if isinstance(reasoning, str) else ""


def looks_like_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text.strip()))


def clip(text: str, limit: int = 120) -> str:
    """One line of at most `limit` characters, for error messages that quote a reply."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- requests, cache, orchestration -------------------------------------------------------------


def build_requests(
    kind: str,
    samples: Sequence[Any],
    answers: Mapping[str, Sequence[str]],
    *,
    candidate: str = "finetuned",
    opponent: str = "prompt_eng",
) -> list[JudgeRequest]:
    """The requests of one kind. `answers` maps mode -> answers aligned with `samples`.

    reference/blind: one request per (mode, sample) for every mode in `answers`.
    pairwise: two per sample (candidate shown first, then second), candidate against opponent.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown judge kind {kind!r}; kinds are {', '.join(KINDS)}")
    requests = []
    if kind == "pairwise":
        ours, theirs = answers[candidate], answers[opponent]
        for sample, mine, other in zip(samples, ours, theirs):
            mode = f"{candidate}-vs-{opponent}"
            requests.append(JudgeRequest(kind, sample.id, mode, sample.prompt, sample.reference, mine, other, "candidate_first"))
            requests.append(JudgeRequest(kind, sample.id, mode, sample.prompt, sample.reference, other, mine, "candidate_second"))
        return requests
    for mode, texts in answers.items():
        for sample, text in zip(samples, texts):
            reference = sample.reference if kind == "reference" else None
            requests.append(JudgeRequest(kind, sample.id, mode, sample.prompt, reference, text))
    return requests


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_key(identity: str, request: JudgeRequest) -> str:
    """Cache key: backend identity and model, prompt version, kind, order, sample, and content hashes.

    The mode is left out on purpose: the judge never sees it, so when two modes give the same
    answer (common between base and prompt_eng) it is judged, and paid for, once.
    """
    return fingerprint(
        "judge/v2", identity, prompt_version(), request.kind, request.order, request.sample_id,
        _sha(request.question), _sha(request.reference), _sha(request.answer), _sha(request.answer_b),
    )


def _to_entry(reply: JudgeReply) -> dict[str, Any]:
    return {"scores": dict(reply.scores), "winner": reply.winner, "reasoning": reply.reasoning,
            "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}


def _from_entry(entry: Mapping[str, Any]) -> JudgeReply:
    return JudgeReply(scores=dict(entry.get("scores") or {}), winner=entry.get("winner"),
                      reasoning=str(entry.get("reasoning", "")), input_tokens=int(entry.get("input_tokens", 0)),
                      output_tokens=int(entry.get("output_tokens", 0)), cached=True)


_CLAIM_CHUNK = 16  # judge requests per claimed chunk: a batch of the local judge, a few rounds of a remote one


def run_judge(
    backend: JudgeBackend,
    requests: Sequence[JudgeRequest],
    cache_dir: str | Path,
    *,
    progress: bool = True,
    desc: str = "judge",
) -> list[JudgeReply]:
    """Replies aligned with `requests`: from the cache where present, else from the backend.

    Each successful judgement is written to the cache as soon as the backend yields it; judge
    errors are returned but not cached, so the next run asks again.
    """
    from tqdm.auto import tqdm

    cache = DiskCache(cache_dir, "judge")
    keys = [request_key(backend.identity, r) for r in requests]
    found = cache.get_many(keys)
    replies: list[JudgeReply | None] = [_from_entry(found[k]) if k in found else None for k in keys]
    # Identical requests (the same answer from two modes) are sent once and shared.
    waiting: dict[str, list[int]] = {}
    for i, reply in enumerate(replies):
        if reply is None:
            waiting.setdefault(keys[i], []).append(i)
    if waiting:
        from tunegate.claims import claim_chunks, lock_path

        def answered(key: str, reply: JudgeReply) -> None:
            first, *copies = waiting[key]
            replies[first] = reply
            for index in copies:  # answered by the first: no call, no tokens of its own
                replies[index] = JudgeReply(scores=reply.scores, winner=reply.winner, reasoning=reply.reasoning,
                                            error=reply.error, cached=reply.ok)

        def arrived(chunk: Sequence[str]) -> bool:
            """Judgements another process (an xdist worker) cached meanwhile; True when none is left."""
            for key in chunk:
                if replies[waiting[key][0]] is None and (entry := cache.get(key)) is not None:
                    answered(key, _from_entry(entry))
            return all(replies[waiting[key][0]] is not None for key in chunk)

        with tqdm(total=len(waiting), desc=desc, unit="call", disable=not progress) as bar:

            def ask(chunk: Sequence[str]) -> None:
                todo = [key for key in chunk if replies[waiting[key][0]] is None]
                for position, reply in backend.judge([requests[waiting[key][0]] for key in todo]):
                    if reply.ok:
                        cache.put(todo[position], _to_entry(reply))
                    answered(todo[position], reply)
                    bar.update(1)

            # Claimed in chunks through file locks (tunegate.claims): xdist workers never ask twice.
            unique = list(waiting)
            claim_chunks([unique[start : start + _CLAIM_CHUNK] for start in range(0, len(unique), _CLAIM_CHUNK)],
                         lock_for=lambda chunk: lock_path(cache.root, cache.namespace, chunk),
                         is_done=arrived, work=ask)
    absent = [requests[i].sample_id for i, reply in enumerate(replies) if reply is None]
    if absent:
        raise RuntimeError(f"judge backend {backend.identity} returned no reply for {len(absent)} requests: {absent[:5]}")
    return [reply for reply in replies if reply is not None]


# -- results ------------------------------------------------------------------------------------


def score_rows(requests: Sequence[JudgeRequest], replies: Sequence[JudgeReply]) -> list[tuple[str, str, str, float]]:
    """Long score-table rows (sample_id, mode, metric, value) of the successful reference/blind judgements."""
    rows = []
    for request, reply in zip(requests, replies):
        if request.kind == "pairwise" or not reply.ok:
            continue
        names = metric_names(request.kind)
        values = [reply.scores[d] for d in DIMENSIONS]
        for name, value in zip(names, [*values, sum(values) / len(values)]):
            rows.append((request.sample_id, request.mode, name, float(value)))
    return rows


@dataclass(frozen=True, slots=True)
class JudgeFailure:
    """One judgement that produced no score, for the error budget and the report."""

    kind: str
    mode: str
    sample_id: str
    message: str
    order: str = ""  # pairwise: which of the two orders failed

    def __str__(self) -> str:
        order = f" ({self.order.replace('_', ' ')})" if self.order else ""
        return f"{self.mode}/{self.sample_id}{order}: {self.message}"


def judge_failures(requests: Sequence[JudgeRequest], replies: Sequence[JudgeReply]) -> list[JudgeFailure]:
    """The failed judgements, ordered so the first few span every mode (examples for a message)."""
    failed = [JudgeFailure(q.kind, q.mode, q.sample_id, r.error or "", q.order) for q, r in zip(requests, replies) if not r.ok]
    rank: dict[str, int] = {}
    spread = []
    for failure in failed:  # the n-th failure of its mode sorts into round n
        rank[failure.mode] = rank.get(failure.mode, -1) + 1
        spread.append((rank[failure.mode], failure))
    return [failure for _, failure in sorted(spread, key=lambda pair: pair[0])]


@dataclass(frozen=True, slots=True)
class JudgeUsage:
    """Calls, tokens and cost of one (kind, mode) of judging in this run."""

    kind: str
    mode: str
    judgements: int
    cached: int
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    seconds: float

    def cost(self, price_input: float | None, price_output: float | None) -> float | None:
        """Cost of the tokens sent this run (cached judgements cost nothing), prices per million tokens."""
        if price_input is None or price_output is None:
            return None
        return (self.input_tokens * price_input + self.output_tokens * price_output) / 1e6


def usage(requests: Sequence[JudgeRequest], replies: Sequence[JudgeReply]) -> list[JudgeUsage]:
    """Per (kind, mode): cached judgements count as judgements, not as calls or tokens."""
    groups: dict[tuple[str, str], list[JudgeReply]] = {}
    for request, reply in zip(requests, replies):
        groups.setdefault((request.kind, request.mode), []).append(reply)
    result = []
    for (kind, mode), group in groups.items():
        fresh = [r for r in group if not r.cached]
        result.append(JudgeUsage(
            kind=kind, mode=mode, judgements=len(group), cached=len(group) - len(fresh),
            calls=sum(r.calls for r in fresh), errors=sum(not r.ok for r in group),
            input_tokens=sum(r.input_tokens for r in fresh), output_tokens=sum(r.output_tokens for r in fresh),
            seconds=sum(r.latency_s for r in fresh),
        ))
    return result


# -- pairwise -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairwiseResult:
    """Candidate vs opponent, each sample judged twice with the positions swapped.

    Per sample: a win when the candidate wins one order and does not lose the other, a loss the
    other way round, a tie otherwise, including a split verdict (each order preferring the same
    position), which is position bias, not preference. `net` is the mean of +1/0/-1 over the
    samples with both orders judged, with its bootstrap CI.
    """

    candidate: str
    opponent: str
    outcomes: Mapping[str, int]
    wins: int
    ties: int
    losses: int
    first_position_picks: int  # verdicts that chose whichever answer was shown first
    decided_verdicts: int  # verdicts that chose a side (not "tie")
    errors: int  # samples left out because an order had a judge error
    net: Any  # tunegate.stats.MeanCI of the +1/0/-1 outcomes

    @property
    def n(self) -> int:
        return len(self.outcomes)

    def summary(self) -> str:
        bias = (f"; the answer shown first was picked in {self.first_position_picks}/{self.decided_verdicts} "
                "decided verdicts") if self.decided_verdicts else ""
        errors = f"; {self.errors} samples left out for judge errors" if self.errors else ""
        return (
            f"{self.candidate} vs {self.opponent}, judged both ways round: {self.wins} wins, {self.ties} ties, "
            f"{self.losses} losses (n={self.n}); net win rate {self.net.mean:+.2f} "
            f"[{self.net.confidence:.0%} CI {self.net.ci_low:+.2f}, {self.net.ci_high:+.2f}]{bias}{errors}"
        )


def pairwise_result(
    requests: Sequence[JudgeRequest],
    replies: Sequence[JudgeReply],
    *,
    candidate: str = "finetuned",
    opponent: str = "prompt_eng",
    seed: int = 0,
    iters: int = 10_000,
) -> PairwiseResult | None:
    """Aggregate the two orders of every pairwise sample (None when no sample has both)."""
    from tunegate.stats import bootstrap_mean_ci

    per_sample: dict[str, dict[str, JudgeReply]] = {}
    for request, reply in zip(requests, replies):
        if request.kind == "pairwise":
            per_sample.setdefault(request.sample_id, {})[request.order] = reply
    outcomes: dict[str, int] = {}
    first_picks = decided = errors = 0
    for sample_id, orders in per_sample.items():
        if len(orders) != 2 or not all(r.ok for r in orders.values()):
            errors += 1
            continue
        score = 0
        for order, reply in orders.items():
            if reply.winner == "tie":
                continue
            decided += 1
            first_picks += reply.winner == "A"
            candidate_won = (reply.winner == "A") == (order == "candidate_first")
            score += 1 if candidate_won else -1
        outcomes[sample_id] = (score > 0) - (score < 0)
    if not outcomes:
        return None
    values = list(outcomes.values())
    return PairwiseResult(
        candidate=candidate, opponent=opponent, outcomes=outcomes,
        wins=values.count(1), ties=values.count(0), losses=values.count(-1),
        first_position_picks=first_picks, decided_verdicts=decided, errors=errors,
        net=bootstrap_mean_ci(values, iters=iters, seed=seed),
    )
