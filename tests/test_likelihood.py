"""tunegate.likelihood against a plain one-row-at-a-time computation, on real (tiny, random) models."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tunegate.errors import ModelError
from tunegate.likelihood import score_references

VOCAB = 256
# (prompt length, reference length): long and short prompts, long and one-token references.
SHAPES = [(40, 3), (3, 25), (120, 1), (7, 7), (64, 40), (1, 12)]


def tiny_model(architecture: str, attn_implementation: str):
    """A random-weight causal LM, small enough to build in a fraction of a second.

    Llama's rotary positions are shift-invariant (a left-padded row scores the same at any offset), so
    GPT-2, with learned absolute positions, is the one that fails if position_ids are wrong.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if architecture == "gpt2":
        config = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=512, bos_token_id=1,
                            eos_token_id=2, attn_implementation=attn_implementation)
        return GPT2LMHeadModel(config).eval()
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         attn_implementation=attn_implementation)
    return LlamaForCausalLM(config).eval()


def random_rows(shapes: list[tuple[int, int]], seed: int = 0) -> tuple[list[list[int]], list[int]]:
    rng = random.Random(seed)
    rows = [[rng.randrange(1, VOCAB) for _ in range(prompt + reference)] for prompt, reference in shapes]
    return rows, [prompt for prompt, _ in shapes]


def unbatched(model, row: list[int], start: int) -> tuple[int, float]:
    """The textbook computation: one row, no padding, full logits, log_softmax, gather."""
    import torch

    ids = torch.tensor([row])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    picked = logprobs[:-1].gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
    answer = picked[start - 1 :]
    return int(answer.numel()), float(answer.mean())


@pytest.fixture(scope="module", params=[("llama", "sdpa"), ("llama", "eager"), ("gpt2", "sdpa")],
                ids=["llama-sdpa", "llama-eager", "gpt2-sdpa"])
def model(request: pytest.FixtureRequest):
    return tiny_model(*request.param)


def test_batch_equals_the_unbatched_textbook_computation(model) -> None:
    rows, starts = random_rows(SHAPES)
    scored = score_references(model, rows, starts, pad_token_id=0, device="cpu")
    expected = [unbatched(model, row, start) for row, start in zip(rows, starts)]
    assert [tokens for tokens, _ in scored] == [reference for _, reference in SHAPES]
    assert [tokens for tokens, _ in scored] == [tokens for tokens, _ in expected]
    for (_, got), (_, want) in zip(scored, expected):
        assert got == pytest.approx(want, abs=1e-4)


def test_batched_equals_one_by_one(model) -> None:
    rows, starts = random_rows(SHAPES, seed=1)
    batched = score_references(model, rows, starts, pad_token_id=VOCAB - 1, device="cpu")
    single = [score_references(model, [row], [start], pad_token_id=0, device="cpu")[0]
              for row, start in zip(rows, starts)]
    assert [tokens for tokens, _ in batched] == [tokens for tokens, _ in single]
    for (_, got), (_, want) in zip(batched, single):
        assert got == pytest.approx(want, abs=1e-4)


def test_empty_reference_is_a_model_error(model) -> None:
    rows, starts = random_rows([(5, 3), (6, 0)])
    with pytest.raises(ModelError, match="row 1 .* no reference tokens"):
        score_references(model, rows, starts, pad_token_id=0, device="cpu")


def test_no_prompt_token_is_a_model_error(model) -> None:
    rows, _ = random_rows([(0, 4)])
    with pytest.raises(ModelError, match="no prompt token"):
        score_references(model, rows, [0], pad_token_id=0, device="cpu")


def test_empty_batch_scores_nothing(model) -> None:
    assert score_references(model, [], [], pad_token_id=0, device="cpu") == []


@pytest.mark.slow
def test_demo_model_with_adapter_matches_unbatched(demo_model_dir: Path, random_adapter_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, random_adapter_dir).eval()
    rows, starts = random_rows([(30, 4), (5, 12), (18, 1)], seed=2)
    scored = score_references(model, rows, starts, pad_token_id=0, device="cpu")
    expected = [unbatched(model, row, start) for row, start in zip(rows, starts)]
    for (tokens, got), (want_tokens, want) in zip(scored, expected):
        assert tokens == want_tokens
        assert got == pytest.approx(want, abs=1e-4)
