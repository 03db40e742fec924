"""What generation takes and gives: the modes, decoding settings, answers and reference likelihoods.

Plain frozen dataclasses with no heavy imports, so scoring, gates and reports use them without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MODES = ("base", "prompt_eng", "finetuned")


@dataclass(frozen=True, slots=True)
class DecodingConfig:
    """Greedy decoding settings; every field is part of the generation cache key except batch_size.

    batch_size only changes padding, which greedy decoding should not see; it is left out of the
    key so a different batch size on another runner still reuses the cache. merge_adapter keys the
    finetuned mode only (see `ModelSession.cache_key`): a merged matmul `(W + s·BA)x` rounds
    differently from `Wx + s·B(Ax)`, so in bf16 a greedy answer can flip on a near-tie.
    """

    max_new_tokens: int = 128
    batch_size: int = 16
    repetition_penalty: float = 1.0
    dtype: str = "auto"  # "auto": float32 on CPU, bfloat16 on CUDA
    device: str = "auto"  # "auto": cuda when available, else cpu
    merge_adapter: bool = False  # finetuned: generate with the LoRA merged into the weights, when exact to undo

    def cache_fields(self) -> dict[str, Any]:
        """The fields every mode's key covers (merge_adapter is added per mode by `cache_key`)."""
        fields = asdict(self)
        fields.pop("batch_size")
        fields.pop("merge_adapter")  # popped, not defaulted: keys written before the field existed stay valid
        return fields


@dataclass(frozen=True, slots=True)
class Generation:
    """One model answer with the facts a gate or a report needs about how it ended."""

    sample_id: str
    mode: str
    text: str
    finish_reason: str  # "stop" (end-of-turn token) or "length" (hit max_new_tokens)
    prompt_tokens: int
    output_tokens: int
    latency_s: float  # the batch's wall time divided by its size
    cached: bool = False

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True, slots=True)
class ReferenceLikelihood:
    """How likely the mode finds the sample's reference answer, teacher-forced after its prompt.

    `mean_logprob` is the mean natural-log probability per reference token (higher: the model
    expected this answer); perplexity is exp(−mean_logprob). A fine-tuned adapter should raise it
    on in-domain references: it is the training objective, measured on held-out samples.
    """

    sample_id: str
    mode: str
    tokens: int
    mean_logprob: float
    cached: bool = False

    @property
    def perplexity(self) -> float:
        import math

        return math.exp(-self.mean_logprob)
