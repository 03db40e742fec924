"""A judge with no network: a local transformers model scores from its token probabilities.

G-Eval style (Liu et al., 2023): instead of sampling "4" and parsing it, read the model's
probability for each score token 1-5 at the position where the score goes and take the
expected score, sum(p_i * i) / sum(p_i). That is deterministic, uses the whole distribution
(a judge torn between 3 and 4 says 3.5, not a coin flip), and needs one forward pass per
dimension instead of a generation. The dimensions are read in order, each continuing the
cached prefix with the most likely score written in (as the model would have written it), so
the three scores cost about one prompt's prefill.

A reply whose score tokens get too little probability (the model wanted to say something
else) is a judge error, not a score. On the demo this backend runs on the run's own base
model with the adapter switched off: a 135M judge is a smoke test of the machinery, not a
verdict, and the report says so.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from tunegate.errors import JudgeError
from tunegate.judge import (
    BLIND_INSTRUCTION,
    DIMENSIONS,
    SCORE_MAX,
    SCORE_MIN,
    JudgeReply,
    JudgeRequest,
    request_blocks,
    rubric,
)

_SCORES = [str(score) for score in range(SCORE_MIN, SCORE_MAX + 1)]
# Digits, not letters: this tokenizer family merges " A" into one token but keeps digits apart.
_PAIR_LABELS = {"A": "1", "B": "2", "tie": "0"}
_PAIR_PREFIX = "Choice: "


def _label(dimension: str) -> str:
    return dimension.capitalize()


def _system(request: JudgeRequest) -> str:
    if request.kind == "pairwise":
        task = (
            "Two answers to the same question follow, A and B. Which one is better overall? "
            "Reply in exactly this form:\nChoice: <1 if answer A is better, 2 if answer B is better, 0 if equally good>"
        )
    else:
        lines = "\n".join(f"{_label(d)}: <{SCORE_MIN}-{SCORE_MAX}>" for d in DIMENSIONS)
        blind = BLIND_INSTRUCTION if request.kind == "blind" else ""
        task = f"{blind}Reply in exactly this form:\n{lines}"
    return f"{rubric()}\n\n{task}"


def _following_token(tokenizer: Any, prefix: str, label: str) -> int:
    """The token a label starts with right after `prefix`, as the model would see it written."""
    head = tokenizer.encode(prefix, add_special_tokens=False)
    whole = tokenizer.encode(prefix + label, add_special_tokens=False)
    if whole[: len(head)] != head or len(whole) == len(head):
        raise JudgeError(
            f"the local judge's tokenizer merges {label!r} into {prefix!r}, so its score cannot be read from one "
            "token; use another judge model (or the openai backend)"
        )
    return whole[len(head)]


def _cache_argument(model: Any) -> str:
    """transformers renamed `past_key_values` to `cache` in 5.2x; pass whichever this model takes."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(inner).forward).parameters else "past_key_values"


def _cache_of(output: Any) -> Any:
    return output.get("cache") if output.get("cache") is not None else output.get("past_key_values")


class LocalJudge:
    """`JudgeBackend` on a loaded causal LM.

    Args:
        identity: stable and secret-free: model content hash, dtype and device class.
        weights: a context manager factory yielding the model in inference mode (for the demo,
            the run's own base model with the adapter off).
        tokenizer: a zero-argument callable returning the model's tokenizer (left padding, chat
            template); called only when something is judged, so a cached rerun loads nothing.
        device: where input tensors go.
        batch_size: prompts per forward pass.
        min_mass: the least total probability the score (or A/B/tie) tokens must get.
        share_prefix: run the rubric every prompt shares once per batch (same scores, ~30% faster).
    """

    def __init__(
        self,
        *,
        identity: str,
        weights: Callable[[], AbstractContextManager[Any]],
        tokenizer: Callable[[], Any],
        device: str,
        batch_size: int = 8,
        min_mass: float = 0.25,
        share_prefix: bool = True,
    ) -> None:
        self.identity = identity
        self._weights = weights
        self._tokenizer_factory = tokenizer
        self._device = device
        self._batch_size = batch_size
        self._min_mass = min_mass
        self._share_prefix = share_prefix

    @property
    def _tokenizer(self) -> Any:
        return self._tokenizer_factory()

    def _prompt(self, request: JudgeRequest) -> str:
        messages = [{"role": "system", "content": _system(request)}, {"role": "user", "content": request_blocks(request)}]
        rendered = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return rendered + (_PAIR_PREFIX if request.kind == "pairwise" else f"{_label(DIMENSIONS[0])}: ")

    def judge(self, requests: Sequence[JudgeRequest]) -> Iterator[tuple[int, JudgeReply]]:
        prompts = [self._prompt(r) for r in requests]
        # Similar lengths together: less padding per forward pass.
        order = sorted(range(len(requests)), key=lambda i: (requests[i].kind == "pairwise", len(prompts[i])))
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            pairwise = [i for i in chunk if requests[i].kind == "pairwise"]
            scored = [i for i in chunk if requests[i].kind != "pairwise"]
            results: list[tuple[int, JudgeReply]] = []
            with self._weights() as model:
                if scored:
                    results += zip(scored, self._score([prompts[i] for i in scored], model))
                if pairwise:
                    results += zip(pairwise, self._prefer([prompts[i] for i in pairwise], model))
            yield from results

    # -- forward passes ---------------------------------------------------------------------

    def _prefill(self, model: Any, prompts: Sequence[str]) -> tuple[Any, Any, Any, list[int]]:
        """One forward pass over a batch, the rubric they share computed once.

        Every prompt of a batch starts with the same system turn (the rubric), often half of its
        tokens. That prefix runs once at batch size 1, its key/value cache is repeated across the
        batch, and only the per-sample rest runs batched, left-padded after the prefix (the
        attention mask's hole covers the padding; positions count real tokens only).

        Returns the model output, the attention mask and position ids so far, and each prompt's
        token count.
        """
        import torch

        tokenizer = self._tokenizer
        shared = os.path.commonprefix(list(prompts)) if self._share_prefix else ""
        shared = shared[: shared.rfind("\n") + 1]  # cut at a line end: a clean token boundary
        head = tokenizer(shared, add_special_tokens=False)["input_ids"] if shared else []
        rests = [p[len(shared) :] for p in prompts]
        clean = bool(head) and all(
            tokenizer(p, add_special_tokens=False)["input_ids"] == head + tokenizer(r, add_special_tokens=False)["input_ids"]
            for p, r in zip(prompts, rests)
        )
        if not clean:  # no shared prefix, or one that tokenizes differently alone: plain batch
            encoded = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
            ids, mask = encoded["input_ids"].to(self._device), encoded["attention_mask"].to(self._device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: count real tokens only
            output = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
            return output, mask, positions, mask.sum(dim=1).tolist()
        prefix = torch.tensor([head], device=self._device)
        cache = _cache_of(model(input_ids=prefix, use_cache=True, logits_to_keep=1))
        cache.batch_repeat_interleave(len(prompts))
        encoded = tokenizer(rests, return_tensors="pt", padding=True, add_special_tokens=False)
        ids, rest_mask = encoded["input_ids"].to(self._device), encoded["attention_mask"].to(self._device)
        mask = torch.cat([torch.ones(len(prompts), len(head), dtype=rest_mask.dtype, device=self._device), rest_mask], 1)
        positions = len(head) + (rest_mask.cumsum(-1) - 1).clamp(min=0)
        output = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                       **{_cache_argument(model): cache})
        return output, mask, positions, mask.sum(dim=1).tolist()

    def _score(self, prompts: Sequence[str], model: Any) -> list[JudgeReply]:
        import torch

        started = time.perf_counter()
        tokenizer = self._tokenizer
        score_ids = torch.tensor(
            [_following_token(tokenizer, f"{_label(DIMENSIONS[0])}: ", s) for s in _SCORES], device=self._device
        )
        values = torch.arange(SCORE_MIN, SCORE_MAX + 1, dtype=torch.float32, device=self._device)
        output, mask, positions, prompt_tokens = self._prefill(model, prompts)
        expected, masses, spreads = [], [], []
        for k, dimension in enumerate(DIMENSIONS):
            probabilities = torch.softmax(output.logits[:, -1, :].float(), dim=-1)[:, score_ids]
            mass = probabilities.sum(dim=1)
            expected.append(((probabilities * values).sum(dim=1) / mass.clamp(min=1e-12)).tolist())
            masses.append(mass.tolist())
            spreads.append((probabilities / mass.clamp(min=1e-12)[:, None]).tolist())
            if k + 1 == len(DIMENSIONS):
                break
            # Write the most likely score in, then ask for the next dimension on the cached prefix.
            chosen = score_ids[probabilities.argmax(dim=1)][:, None]
            tail = tokenizer.encode(f"\n{_label(DIMENSIONS[k + 1])}: ", add_special_tokens=False)
            step = torch.cat([chosen, torch.tensor([tail] * len(prompts), device=self._device)], dim=1)
            mask = torch.cat([mask, torch.ones_like(step)], dim=1)
            positions = positions[:, -1:] + 1 + torch.arange(step.shape[1], device=self._device)[None, :]
            cached = {_cache_argument(model): _cache_of(output)}
            output = model(input_ids=step, attention_mask=mask, position_ids=positions, use_cache=True,
                           logits_to_keep=1, **cached)
        seconds = (time.perf_counter() - started) / len(prompts)
        replies = []
        for row in range(len(prompts)):
            low = [(d, masses[k][row]) for k, d in enumerate(DIMENSIONS) if masses[k][row] < self._min_mass]
            reasoning = "; ".join(
                f"{d} P(1-5) " + "/".join(f"{p:.2f}" for p in spreads[k][row]) for k, d in enumerate(DIMENSIONS)
            )
            if low:
                dimension, mass = low[0]
                error = (f"the judge model put only {mass:.0%} of its probability on the scores "
                         f"{SCORE_MIN}-{SCORE_MAX} for {dimension} (min_mass {self._min_mass:.0%})")
                replies.append(JudgeReply(error=error, reasoning=reasoning, input_tokens=prompt_tokens[row], latency_s=seconds))
                continue
            scores = {d: float(expected[k][row]) for k, d in enumerate(DIMENSIONS)}
            replies.append(JudgeReply(scores=scores, reasoning=reasoning, input_tokens=prompt_tokens[row], latency_s=seconds))
        return replies

    def _prefer(self, prompts: Sequence[str], model: Any) -> list[JudgeReply]:
        import torch

        started = time.perf_counter()
        label_ids = torch.tensor(
            [_following_token(self._tokenizer, _PAIR_PREFIX, text) for text in _PAIR_LABELS.values()], device=self._device
        )
        output, mask, _, prompt_tokens_list = self._prefill(model, prompts)
        probabilities = torch.softmax(output.logits[:, -1, :].float(), dim=-1)[:, label_ids]
        mass = probabilities.sum(dim=1).tolist()
        best = probabilities.argmax(dim=1).tolist()
        seconds = (time.perf_counter() - started) / len(prompts)
        winners = list(_PAIR_LABELS)
        replies = []
        for row, prompt_tokens in enumerate(prompt_tokens_list):
            reasoning = "P(A/B/tie) " + "/".join(f"{p:.2f}" for p in probabilities[row].tolist())
            if mass[row] < self._min_mass:
                error = (f"the judge model put only {mass[row]:.0%} of its probability on its choice tokens "
                         f"(min_mass {self._min_mass:.0%})")
                replies.append(JudgeReply(error=error, reasoning=reasoning, input_tokens=prompt_tokens, latency_s=seconds))
            else:
                replies.append(JudgeReply(winner=winners[best[row]], reasoning=reasoning, input_tokens=prompt_tokens, latency_s=seconds))
        return replies
