"""tunegate.inference on the real demo model and a real LoRA adapter (slow: generates text)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunegate.cache import DiskCache
from tunegate.data import Sample
from tunegate.errors import AdapterError
from tunegate.inference import DecodingConfig, ModelSession

pytestmark = pytest.mark.slow

SAMPLES = [
    Sample(id="track", prompt="Where is my order NW-12345?", reference="-"),
    Sample(id="password", prompt="How do I reset my password?", reference="-"),
    Sample(id="hello", prompt="Hi!", reference="-"),
    Sample(id="refund", prompt="Can I return boots I bought 40 days ago?", reference="-"),
]
PROMPTS = {"base": None, "prompt_eng": "You are Northwind's support agent. Answer in one sentence.", "finetuned": None}


def session(model_dir: Path, cache: Path, adapter: Path | None = None, **decoding: object) -> ModelSession:
    settings = {"max_new_tokens": 24, "batch_size": 4, **decoding}
    return ModelSession(model_dir, adapter, PROMPTS, DecodingConfig(**settings), cache)


def texts(generations) -> list[str]:
    return [g.text for g in generations]


def test_modes_share_one_loaded_base_and_differ_as_designed(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path
) -> None:
    with_adapter = session(demo_model_dir, tmp_path / "a", random_adapter_dir)
    base = with_adapter.generate(SAMPLES, "base", progress=False)
    finetuned = with_adapter.generate(SAMPLES, "finetuned", progress=False)
    prompt_eng = with_adapter.generate(SAMPLES, "prompt_eng", progress=False)
    # The adapter (random, non-zero) changes the answers; disabling it gives the plain base back.
    assert texts(finetuned) != texts(base)
    plain = session(demo_model_dir, tmp_path / "b").generate(SAMPLES, "base", progress=False)
    assert texts(base) == texts(plain)
    # prompt_eng differs from base only by the system prompt in the rendered chat.
    sample = SAMPLES[0]
    assert PROMPTS["prompt_eng"] in with_adapter.render_prompt(sample, "prompt_eng")
    assert PROMPTS["prompt_eng"] not in with_adapter.render_prompt(sample, "base")
    assert texts(prompt_eng) != texts(base)
    assert [g.mode for g in prompt_eng] == ["prompt_eng"] * len(SAMPLES)
    assert [g.sample_id for g in finetuned] == [s.id for s in SAMPLES]


def test_rerun_with_nothing_changed_loads_no_model(demo_model_dir: Path, tmp_path: Path) -> None:
    first = session(demo_model_dir, tmp_path).generate(SAMPLES, "base", progress=False)
    assert not any(g.cached for g in first)
    again = session(demo_model_dir, tmp_path)
    second = again.generate(SAMPLES, "base", progress=False)
    assert all(g.cached for g in second)
    assert texts(second) == texts(first)
    assert not again.model_loaded


def test_a_change_regenerates_exactly_what_it_affects(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = session(demo_model_dir, cache, random_adapter_dir)
    for mode in ("base", "prompt_eng", "finetuned"):
        first.generate(SAMPLES[:2], mode, progress=False)
    # New samples: only they are generated.
    grown = session(demo_model_dir, cache, random_adapter_dir).generate(SAMPLES, "base", progress=False)
    assert [g.cached for g in grown] == [True, True, False, False]
    # A new engineered prompt: prompt_eng regenerates, base and finetuned stay cached.
    changed = ModelSession(
        demo_model_dir, random_adapter_dir, {**PROMPTS, "prompt_eng": "Be brief."},
        DecodingConfig(max_new_tokens=24, batch_size=4), cache,
    )
    assert not any(g.cached for g in changed.generate(SAMPLES[:2], "prompt_eng", progress=False))
    assert all(g.cached for g in changed.generate(SAMPLES[:2], "base", progress=False))
    assert all(g.cached for g in changed.generate(SAMPLES[:2], "finetuned", progress=False))
    # Other decoding settings: everything regenerates.
    longer = session(demo_model_dir, cache, random_adapter_dir, max_new_tokens=25)
    assert not any(g.cached for g in longer.generate(SAMPLES[:2], "base", progress=False))


def test_a_retrained_adapter_regenerates_only_finetuned(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path
) -> None:
    import shutil

    adapter = Path(shutil.copytree(random_adapter_dir, tmp_path / "adapter"))
    cache = tmp_path / "cache"
    first = session(demo_model_dir, cache, adapter)
    first.generate(SAMPLES[:2], "base", progress=False)
    first.generate(SAMPLES[:2], "finetuned", progress=False)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["lora_alpha"] = 2 * config["lora_alpha"]  # a different adapter, as a retrain would be
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    second = session(demo_model_dir, cache, adapter)
    assert all(g.cached for g in second.generate(SAMPLES[:2], "base", progress=False))
    assert not any(g.cached for g in second.generate(SAMPLES[:2], "finetuned", progress=False))


def test_batched_generation_equals_one_by_one(demo_model_dir: Path, tmp_path: Path) -> None:
    batched = session(demo_model_dir, tmp_path / "batched", batch_size=4).generate(SAMPLES, "prompt_eng", progress=False)
    single = session(demo_model_dir, tmp_path / "single", batch_size=1).generate(SAMPLES, "prompt_eng", progress=False)
    assert texts(batched) == texts(single)
    assert [g.output_tokens for g in batched] == [g.output_tokens for g in single]


def test_finish_reason_and_token_counts(demo_model_dir: Path, tmp_path: Path) -> None:
    short = session(demo_model_dir, tmp_path, max_new_tokens=5).generate(SAMPLES, "base", progress=False)
    assert all(g.finish_reason == "length" and g.output_tokens == 5 for g in short)
    assert all(g.truncated for g in short)
    long = session(demo_model_dir, tmp_path, max_new_tokens=64).generate([SAMPLES[2]], "base", progress=False)
    assert long[0].finish_reason == "stop" and 0 < long[0].output_tokens < 64
    assert long[0].prompt_tokens > 10


def test_sampling_settings_of_the_checkpoint_are_overridden(demo_model_dir: Path, tmp_path: Path) -> None:
    """A checkpoint whose generation_config.json samples must still decode greedily."""
    sampled = tmp_path / "sampled-model"
    sampled.mkdir()
    for item in demo_model_dir.iterdir():
        if item.name != "generation_config.json":
            os.symlink(item, sampled / item.name)
    generation_config = json.loads((demo_model_dir / "generation_config.json").read_text())
    generation_config.update(do_sample=True, temperature=1.5, top_p=0.9)
    (sampled / "generation_config.json").write_text(json.dumps(generation_config))
    greedy = session(demo_model_dir, tmp_path / "c1").generate(SAMPLES, "base", progress=False)
    overridden = session(sampled, tmp_path / "c2").generate(SAMPLES, "base", progress=False)
    assert texts(overridden) == texts(greedy)


def test_finetuned_mode_without_an_adapter_is_a_clear_error(demo_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="finetuned mode needs an adapter"):
        session(demo_model_dir, tmp_path).generate(SAMPLES, "finetuned", progress=False)


def test_each_batch_is_cached_as_it_finishes(demo_model_dir: Path, tmp_path: Path) -> None:
    """One entry per generated sample lands on disk, so an interrupted run keeps finished batches."""
    session(demo_model_dir, tmp_path, batch_size=2).generate(SAMPLES, "base", progress=False)
    assert len(DiskCache(tmp_path, "generations")) == len(SAMPLES)


def test_a_killed_run_keeps_what_it_finished(demo_model_dir: Path, tmp_path: Path) -> None:
    """SIGKILL a generating process after its first batch lands; the rerun reuses that batch."""
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from test_inference import SAMPLES, session
session(Path({str(demo_model_dir)!r}), Path({str(tmp_path)!r}), batch_size=1, max_new_tokens=64).generate(
    SAMPLES * 1, "base", progress=False)
"""
    process = subprocess.Popen([sys.executable, "-c", script])
    entries = DiskCache(tmp_path, "generations")
    deadline = time.monotonic() + 120
    while len(entries) == 0 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(entries)
    assert 1 <= finished < len(SAMPLES), "the kill should land after the first batch and before the last"
    rerun = session(demo_model_dir, tmp_path, batch_size=1, max_new_tokens=64).generate(SAMPLES, "base", progress=False)
    assert sum(g.cached for g in rerun) == finished


def test_base_weights_switch_the_adapter_off_only_inside_the_block(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path
) -> None:
    """The local judge borrows the loaded model: inside the block it is the base, after it the adapter is back."""
    import torch
    from transformers import AutoModelForCausalLM

    with_adapter = session(demo_model_dir, tmp_path / "a", random_adapter_dir)
    ids = with_adapter.tokenizer("Where is my order?", return_tensors="pt")["input_ids"]
    with with_adapter.base_weights() as model:
        inside = model(input_ids=ids).logits
    with torch.inference_mode():
        after = with_adapter._load()(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32).eval()(input_ids=ids).logits
    assert torch.allclose(inside, plain, atol=1e-5)
    assert not torch.allclose(after, plain, atol=1e-3)


# --- ablation adapters on the one loaded base ---------------------------------------------------


def count_base_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every AutoModelForCausalLM.from_pretrained call (a base load) from here on."""
    from transformers import AutoModelForCausalLM

    calls: list[str] = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(str(args[0]))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    return calls


def test_ablation_adapters_switch_on_the_one_loaded_base(
    demo_model_dir: Path, random_adapter_dir: Path, second_adapter_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    loads = count_base_loads(monkeypatch)
    shared = session(demo_model_dir, tmp_path / "shared", random_adapter_dir)
    own = shared.generate(SAMPLES, "finetuned", progress=False)
    other = shared.generate(SAMPLES, "finetuned", adapter_dir=second_adapter_dir, progress=False)
    base = shared.generate(SAMPLES, "base", progress=False)
    assert len(loads) == 1, "the ablation adapter must load onto the loaded base, not reload it"
    assert shared.adapter_load_seconds > 0
    # Each answer set equals what a session holding only that adapter generates.
    alone = session(demo_model_dir, tmp_path / "alone", second_adapter_dir)
    assert texts(other) == texts(alone.generate(SAMPLES, "finetuned", progress=False))
    assert texts(other) != texts(own)
    assert texts(base) == texts(session(demo_model_dir, tmp_path / "plain").generate(SAMPLES, "base", progress=False))
    # After the ablation run the session's own adapter is active again.
    ids = shared.tokenizer("Where is my order?", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        now = shared._load()(input_ids=ids).logits
        reference = session(demo_model_dir, tmp_path / "ref", random_adapter_dir)._load()(input_ids=ids).logits
    assert torch.allclose(now, reference, atol=1e-5)


def test_ablation_answers_are_cached_by_adapter_content(
    demo_model_dir: Path, second_adapter_dir: Path, tmp_path: Path
) -> None:
    """A session without an adapter of its own takes ablation runs; a copied run reuses its answers."""
    import shutil

    bare = session(demo_model_dir, tmp_path / "cache")
    first = bare.generate(SAMPLES[:2], "finetuned", adapter_dir=second_adapter_dir, progress=False)
    base = bare.generate(SAMPLES[:2], "base", progress=False)  # the adapter is switched off for base
    assert texts(base) == texts(session(demo_model_dir, tmp_path / "plain").generate(SAMPLES[:2], "base", progress=False))
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(second_adapter_dir, copy)
    again = session(demo_model_dir, tmp_path / "cache").generate(SAMPLES[:2], "finetuned", adapter_dir=copy, progress=False)
    assert all(g.cached for g in again) and texts(again) == texts(first)
    with pytest.raises(ValueError, match="adapter_dir is for the finetuned mode"):
        bare.generate(SAMPLES[:1], "base", adapter_dir=copy)
    with pytest.raises(AdapterError, match="finetuned mode needs an adapter"):
        bare.generate(SAMPLES[:1], "finetuned")


# --- reference likelihood (teacher-forced) ------------------------------------------------------


def test_a_greedy_answer_is_likely_and_a_shuffled_one_is_not(demo_model_dir: Path, tmp_path: Path) -> None:
    """The model's own greedy answer, scored as a reference, has low perplexity; its words shuffled, high."""
    from dataclasses import replace

    import random

    maker = session(demo_model_dir, tmp_path / "gen", max_new_tokens=96)
    answers = maker.generate(SAMPLES, "base", progress=False)
    # A finished answer: a truncated one would end on the template's end-of-turn token the model never chose.
    own = [replace(s, reference=a.text) for s, a in zip(SAMPLES, answers) if a.finish_reason == "stop"][:2]
    assert own, "no demo answer finished within 96 tokens"
    shuffled = []
    for sample in own:
        words = sample.reference.split()
        random.Random(0).shuffle(words)
        shuffled.append(replace(sample, reference=" ".join(words)))
    scorer = session(demo_model_dir, tmp_path / "lik", batch_size=2)
    likely = scorer.reference_likelihoods(own, "base", progress=False)
    unlikely = scorer.reference_likelihoods(shuffled, "base", progress=False)
    for good, bad in zip(likely, unlikely):
        assert good.perplexity < 3.0, good  # greedy tokens were the argmax at every step
        assert bad.perplexity > 3 * good.perplexity, (good, bad)
        assert good.tokens >= 5
    # Batched equals one by one (right padding does not leak into the scored positions).
    single = session(demo_model_dir, tmp_path / "one", batch_size=1).reference_likelihoods(own, "base", progress=False)
    assert [round(x.mean_logprob, 4) for x in single] == [round(x.mean_logprob, 4) for x in likely]
    again = session(demo_model_dir, tmp_path / "lik").reference_likelihoods(own, "base", progress=False)
    assert all(x.cached for x in again) and [x.mean_logprob for x in again] == [x.mean_logprob for x in likely]


def test_the_adapter_changes_the_reference_likelihood_only_in_finetuned(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path
) -> None:
    with_adapter = session(demo_model_dir, tmp_path / "a", random_adapter_dir)
    base = with_adapter.reference_likelihoods(SAMPLES[:2], "base", progress=False)
    finetuned = with_adapter.reference_likelihoods(SAMPLES[:2], "finetuned", progress=False)
    plain = session(demo_model_dir, tmp_path / "b").reference_likelihoods(SAMPLES[:2], "base", progress=False)
    # Equal up to float noise (peft's disabled-adapter path vs the plain model); rounding both sides would
    # fail whenever a value sits on a rounding boundary.
    assert [x.mean_logprob for x in base] == pytest.approx([x.mean_logprob for x in plain], abs=1e-5)
    assert [x.mean_logprob for x in finetuned] != [x.mean_logprob for x in base]


def test_a_batch_out_of_memory_is_halved_and_gives_the_same_answers(demo_model_dir: Path, tmp_path: Path) -> None:
    """The real model, with the allocator's failure injected for batches above 2 (CPU cannot run out on cue)."""
    import torch

    small = session(demo_model_dir, tmp_path / "small", batch_size=2).generate(SAMPLES, "base", progress=False)
    squeezed = session(demo_model_dir, tmp_path / "oom", batch_size=4)
    model = squeezed._load()
    real_generate = model.generate
    sizes: list[int] = []

    def generate(*args, **kwargs):
        sizes.append(len(kwargs["input_ids"]))
        if len(kwargs["input_ids"]) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return real_generate(*args, **kwargs)

    model.generate = generate
    answers = squeezed.generate(SAMPLES, "base", progress=False)
    assert sizes == [4, 2, 2]
    assert texts(answers) == texts(small)  # the same pairs of companions as batches of 2
    assert squeezed._sizer.limit == 2


def test_a_cached_rerun_imports_neither_torch_nor_transformers(demo_model_dir: Path, tmp_path: Path) -> None:
    """Keys are computed from remembered renderings and metadata versions: the cached path is import-light."""
    import subprocess
    import sys

    first = session(demo_model_dir, tmp_path)
    first.generate(SAMPLES, "base", progress=False)
    first.reference_likelihoods(SAMPLES, "prompt_eng", progress=False)
    script = f"""
import sys
from pathlib import Path
from tunegate.data import Sample
from tunegate.inference import DecodingConfig, ModelSession
samples = [Sample(id=i, prompt=p, reference=r) for i, p, r in {[(s.id, s.prompt, s.reference) for s in SAMPLES]!r}]
again = ModelSession(Path({str(demo_model_dir)!r}), None, {PROMPTS!r}, DecodingConfig(max_new_tokens=24, batch_size=4),
                     Path({str(tmp_path)!r}))
assert all(g.cached for g in again.generate(samples, "base", progress=False))
assert all(x.cached for x in again.reference_likelihoods(samples, "prompt_eng", progress=False))
print(sorted(name for name in ("torch", "transformers") if name in sys.modules))
"""
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == "[]"
