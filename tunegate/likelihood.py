"""Teacher-forced log-likelihood of a reference answer after its prompt, for a batch of token rows.

Only the reference's tokens are scored, so only their positions need logits: rows are LEFT-padded
(every row ends at the last column, so the references share the batch's tail) and the forward pass
gets `logits_to_keep`, which projects just those last positions onto the vocabulary. With a 500-token
prompt and a 60-token reference that is ~10x less vocabulary projection and log_softmax; the whole pass
gains less, as the layers still read the prompt (benchmarks/likelihood_speed.py: 1.6x on the demo model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunegate.errors import ModelError


def score_references(
    model: Any,
    rows: Sequence[Sequence[int]],
    starts: Sequence[int],
    *,
    pad_token_id: int,
    device: str,
) -> list[tuple[int, float]]:
    """(reference tokens, mean log-prob of the reference tokens) per row, from one forward pass.

    Left padding with an attention mask and position_ids counted from each row's first real token,
    so padding changes neither what a token sees nor its position; `logits_to_keep` limits the
    vocabulary projection and log_softmax to the longest reference's positions.

    Args:
        model: a causal LM (transformers or peft) whose forward takes `position_ids` and
            `logits_to_keep`; the caller chooses its weights (adapter on or off).
        rows: the full token ids of each sample, prompt then reference.
        starts: where each row's reference begins (the prompt's length in tokens), at least 1.
        pad_token_id: fills the padding; any id in the vocabulary, as it is masked out.
        device: where the model's inputs go ("cpu", "cuda", "cuda:0").

    Returns:
        One (number of reference tokens, mean natural-log probability) per row, in the rows' order.

    Raises:
        ModelError: a row has no reference tokens after its prompt, or no prompt token before them.
    """
    import torch

    if len(rows) != len(starts):
        raise ValueError(f"rows and starts must have the same length, got {len(rows)} and {len(starts)}")
    if not rows:
        return []
    answer_lengths = []
    for index, (row, start) in enumerate(zip(rows, starts)):
        if start < 1:
            raise ModelError(
                f"row {index} of the likelihood batch has no prompt token before its reference (start={start}), "
                "so its first token cannot be predicted; render the prompt through the chat template."
            )
        if len(row) - start < 1:
            raise ModelError(
                f"row {index} of the likelihood batch has no reference tokens after its prompt "
                f"({len(row)} tokens, prompt {start}); give the sample a non-empty reference."
            )
        answer_lengths.append(len(row) - start)

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        input_ids[r, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        attention[r, width - len(row) :] = 1
    # Positions as `generate` builds them for left padding: 0 at each row's first real token.
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)

    longest = max(answer_lengths)
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            position_ids=position_ids.to(device),
            # The last `longest + 1` positions: position t predicts token t + 1, and the final
            # position predicts past the row, so it is dropped below.
            logits_to_keep=longest + 1,
            use_cache=False,
        ).logits
        # A forward that swallows logits_to_keep in **kwargs returns every position: keep the tail anyway.
        logits = logits[:, -(longest + 1) :]
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = input_ids[:, width - longest :].to(logprobs.device)
        picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()

    scored = []
    for r, length in enumerate(answer_lengths):
        answer = picked[r, longest - length :]  # a shorter reference's columns are the tail
        scored.append((length, float(answer.mean())))
    return scored
