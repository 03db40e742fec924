"""The served-model backend against a real OpenAI-compatible server on 127.0.0.1 (tests/served_server.py).

No mock of the client: every test sends real HTTP requests through the openai package and asserts on
what the server received (model, messages, parameters), what came back, and what was cached.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.served_server import ServedModelServer, expected_text, expected_usage
from tunegate.data import Sample
from tunegate.errors import AdapterError, ConfigError, ModelError
from tunegate.inference import DecodingConfig
from tunegate.retry import RetryPolicy
from tunegate.served import ServedConfig, ServedSession, chat_messages, served_config

BASE = "base-test"
ADAPTER = "lora-test"
KEY = "tg-served-SECRET-3f9a07d2b6c1"  # not sk-shaped: only the exact-key layer of the scrubber can catch it
KEY_ENV = "TUNEGATE_TEST_SERVED_KEY"
PROMPTS = {"base": None, "prompt_eng": "You are Northwind's support agent. Answer in one sentence.",
           "finetuned": "You are Northwind support."}
FAST = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)
MAX_NEW_TOKENS = 24


def samples(count: int = 3, *, prompts: dict[int, str] | None = None) -> list[Sample]:
    """Distinct samples; the second has its own system text and a history, as eval sets may."""
    found = []
    for i in range(count):
        prompt = (prompts or {}).get(i, f"Where is order NW-{10000 + i}?")
        extra = {"system": "The customer is a premium member.",
                 "history": (("user", "Hi"), ("assistant", "Hello! How can I help?"))} if i == 1 else {}
        found.append(Sample(f"s{i:02d}", prompt, "It ships Monday.", **extra))
    return found


def session(server: ServedModelServer, cache: Path, *, adapter_dir: Path | None = None, retry: RetryPolicy = FAST,
            repetition_penalty: float = 1.0, **served: object) -> ServedSession:
    config = ServedConfig(**{"base_url": server.url, "base_model_name": BASE, "adapter_model_name": ADAPTER,
                             "concurrency": 4, "timeout_s": 5.0, **served})  # type: ignore[arg-type]
    decoding = DecodingConfig(max_new_tokens=MAX_NEW_TOKENS, repetition_penalty=repetition_penalty)
    return ServedSession(config, adapter_dir, PROMPTS, decoding, cache, retry=retry)


def expected_messages(sample: Sample, mode: str) -> list[dict[str, str]]:
    """Written out by hand, as ModelSession.render_prompt builds them, to check the shared helper."""
    system = "\n\n".join(p for p in (PROMPTS[mode], sample.system) if p)
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": r, "content": c} for r, c in sample.history]
    return messages + [{"role": "user", "content": sample.prompt}]


def write_adapter(directory: Path, weights: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}', encoding="utf-8")
    (directory / "adapter_model.safetensors").write_bytes(weights)
    return directory


# -- requests, answers, order -------------------------------------------------------------------


def test_three_modes_answer_in_order_with_each_modes_model_messages_and_greedy_decoding(tmp_path: Path) -> None:
    # The first sample's answer comes last (a 0.3 s hang): the order returned is still the samples'.
    items = samples(3, prompts={0: "Where is order NW-10000? [fault:hang:1:0.3]"})
    with ServedModelServer() as server:
        served = session(server, tmp_path)
        answers = {mode: served.generate(items, mode, progress=False) for mode in ("base", "prompt_eng", "finetuned")}
    for mode, model in (("base", BASE), ("prompt_eng", BASE), ("finetuned", ADAPTER)):
        assert [g.sample_id for g in answers[mode]] == ["s00", "s01", "s02"]
        assert [g.mode for g in answers[mode]] == [mode] * 3
        assert [g.text for g in answers[mode]] == [expected_text(model, expected_messages(s, mode)) for s in items]
        assert not any(g.cached for g in answers[mode])
    received = {(b["model"], b["messages"][-1]["content"], b["messages"][0]["content"]): b for b in server.bodies}
    assert len(server.bodies) == 9
    for mode, model in (("base", BASE), ("prompt_eng", BASE), ("finetuned", ADAPTER)):
        for sample in items:
            messages = expected_messages(sample, mode)
            body = received[(model, sample.prompt, messages[0]["content"])]
            assert body["messages"] == messages
            assert (body["temperature"], body["max_tokens"], body["seed"]) == (0, MAX_NEW_TOKENS, 0)
            assert "repetition_penalty" not in body and "response_format" not in body
    assert answers["base"][0].text != answers["prompt_eng"][0].text  # the system prompt reached the server


def test_chat_messages_put_system_history_then_prompt() -> None:
    sample = samples(2)[1]
    assert chat_messages(sample, "S") == [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello! How can I help?"},
                                          {"role": "user", "content": sample.prompt}]
    assert chat_messages(samples(1)[0], None) == [{"role": "user", "content": "Where is order NW-10000?"}]


def test_repetition_penalty_is_sent_in_the_body_only_when_it_is_not_1(tmp_path: Path) -> None:
    with ServedModelServer() as server:
        session(server, tmp_path / "a", repetition_penalty=1.1).generate(samples(1), "base", progress=False)
        session(server, tmp_path / "b", repetition_penalty=1.0).generate(samples(1), "base", progress=False)
    assert server.bodies[0]["repetition_penalty"] == pytest.approx(1.1)
    assert "repetition_penalty" not in server.bodies[1]


def test_finish_reason_length_is_truncated_and_usage_and_latency_are_recorded(tmp_path: Path) -> None:
    items = samples(2, prompts={1: "Explain the refund policy in detail. [finish:length]"})
    with ServedModelServer(delay_s=0.05) as server:
        stop, cut = session(server, tmp_path).generate(items, "prompt_eng", progress=False)
    assert (stop.finish_reason, stop.truncated, cut.finish_reason, cut.truncated) == ("stop", False, "length", True)
    for generation, sample in ((stop, items[0]), (cut, items[1])):
        messages = expected_messages(sample, "prompt_eng")
        assert (generation.prompt_tokens, generation.output_tokens) == expected_usage(messages, generation.text)
        assert 0.05 <= generation.latency_s < 2.0
    assert cut.output_tokens == MAX_NEW_TOKENS


def test_an_unknown_finish_reason_is_an_error_not_a_score(tmp_path: Path) -> None:
    items = samples(1, prompts={0: "Tell me something rude. [finish:content_filter]"})
    with ServedModelServer() as server, pytest.raises(ModelError) as raised:
        session(server, tmp_path).generate(items, "base", progress=False)
    assert "finish_reason 'content_filter'" in str(raised.value) and "s00 (base)" in str(raised.value)
    assert len(list(tmp_path.rglob("*.json"))) == 0


# -- the cache ----------------------------------------------------------------------------------


def test_a_rerun_is_fully_cached_and_sends_nothing(tmp_path: Path) -> None:
    items = samples(4)
    with ServedModelServer() as server:
        first = {m: session(server, tmp_path).generate(items, m, progress=False) for m in ("base", "prompt_eng", "finetuned")}
        sent = server.calls
        again = {m: session(server, tmp_path).generate(items, m, progress=False) for m in ("base", "prompt_eng", "finetuned")}
        assert server.calls == sent == 12
    for mode in first:
        assert all(g.cached for g in again[mode])
        assert [(g.text, g.finish_reason, g.prompt_tokens, g.output_tokens, g.latency_s) for g in again[mode]] == [
            (g.text, g.finish_reason, g.prompt_tokens, g.output_tokens, g.latency_s) for g in first[mode]]
    assert len(list((tmp_path / "served_generations").glob("*/*.json"))) == 12  # its own namespace
    assert not (tmp_path / "generations").exists()


def test_identical_conversations_are_requested_once(tmp_path: Path) -> None:
    items = [Sample("a", "Same question?", "x"), Sample("b", "Same question?", "x")]
    with ServedModelServer() as server:
        a, b = session(server, tmp_path).generate(items, "base", progress=False)
    assert server.calls == 1 and (a.sample_id, b.sample_id) == ("a", "b") and a.text == b.text


def test_a_new_adapter_identity_regenerates_only_finetuned(tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "adapter", b"weights v1")
    items = samples(3)
    modes = ("base", "prompt_eng", "finetuned")
    with ServedModelServer() as server:
        for mode in modes:
            session(server, tmp_path / "cache", adapter_dir=adapter).generate(items, mode, progress=False)
        write_adapter(adapter, b"weights v2 (retrained)")
        before = len(server.bodies)
        again = {m: session(server, tmp_path / "cache", adapter_dir=adapter).generate(items, m, progress=False)
                 for m in modes}
        fresh = server.bodies[before:]
    assert [b["model"] for b in fresh] == [ADAPTER] * 3
    assert all(g.cached for m in ("base", "prompt_eng") for g in again[m])
    assert not any(g.cached for g in again["finetuned"])


def test_a_renamed_served_adapter_regenerates_only_finetuned(tmp_path: Path) -> None:
    items = samples(2)
    with ServedModelServer(models=(BASE, ADAPTER, "lora-v2")) as server:
        for mode in ("base", "finetuned"):
            session(server, tmp_path).generate(items, mode, progress=False)
        before = server.calls
        renamed = session(server, tmp_path, adapter_model_name="lora-v2")
        assert all(g.cached for g in renamed.generate(items, "base", progress=False))
        assert not any(g.cached for g in renamed.generate(items, "finetuned", progress=False))
    assert server.calls - before == 2 and {b["model"] for b in server.bodies[before:]} == {"lora-v2"}


def test_a_refused_request_is_not_retried_names_the_sample_and_keeps_the_answers_before_it(tmp_path: Path) -> None:
    items = samples(4, prompts={2: "Where is order NW-10002? [fault:400:1]"})
    with ServedModelServer() as server:
        with pytest.raises(ModelError) as raised:
            session(server, tmp_path, concurrency=1).generate(items, "base", progress=False)
        assert server.contents() == [s.prompt for s in items[:3]]  # sent once, and nothing after it
        before = len(server.bodies)
        answers = session(server, tmp_path, concurrency=1).generate(items, "base", progress=False)
        assert server.contents(before) == [items[2].prompt, items[3].prompt]  # only what the first run lacked
    message = str(raised.value)
    for part in ("s02 (base)", server.url, f"{BASE!r}", "HTTP 400", "Simulated HTTP 400", "not retried",
                 "Answers already cached are kept"):
        assert part in message
    assert [g.cached for g in answers] == [True, True, False, False]


# -- retries, errors, secrets -------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["429:1:0.05", "503:1", "hang:1:1.0"])
def test_transient_faults_are_retried_to_the_right_answer(tmp_path: Path, fault: str) -> None:
    items = samples(2, prompts={0: f"Where is order NW-10000? [fault:{fault}]"})
    with ServedModelServer() as server:
        answers = session(server, tmp_path, timeout_s=0.4).generate(items, "finetuned", progress=False)
    assert server.contents().count(items[0].prompt) == 2 and server.contents().count(items[1].prompt) == 1
    assert [g.text for g in answers] == [expected_text(ADAPTER, expected_messages(s, "finetuned")) for s in items]
    assert answers[0].latency_s < 0.4  # the answering attempt's time, not the timed-out one's or the wait


def test_a_server_that_keeps_failing_ends_the_run_with_the_knobs_to_turn(tmp_path: Path) -> None:
    items = samples(1, prompts={0: "Where? [fault:503]"})
    with ServedModelServer() as server, pytest.raises(ModelError) as raised:
        session(server, tmp_path, retry=RetryPolicy(max_retries=2, base_delay_s=0.01)).generate(items, "base", progress=False)
    assert server.calls == 3
    assert "kept failing" in str(raised.value) and "max_retries (now 2)" in str(raised.value)


def test_an_adapter_the_server_does_not_serve_is_one_paragraph_with_the_vllm_fix(tmp_path: Path) -> None:
    with ServedModelServer() as server, pytest.raises(ModelError) as raised:
        session(server, tmp_path, adapter_model_name="missing-lora", concurrency=1).generate(
            samples(3), "finetuned", progress=False)
    message = str(raised.value)
    assert server.calls == 1  # fatal: no retry, nothing more sent
    assert "'missing-lora'" in message and "404" in message and "--lora-modules missing-lora=<adapter dir>" in message
    assert "Answers already cached are kept" in message and "Judgements" not in message and "\n" not in message


def test_the_key_never_reaches_errors_logs_or_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, KEY)
    items = samples(3, prompts={1: "Where? [fault:429:1:0.01]", 2: "Why? [fault:echo]"})  # echo: a 400 quoting the header
    emitted = []
    with ServedModelServer(api_key=KEY) as server:
        with pytest.raises(ModelError) as refused:
            session(server, tmp_path, api_key_env=KEY_ENV, concurrency=1).generate(items, "base", progress=False)
        emitted.append(str(refused.value))
        assert server.contents().count(items[1].prompt) == 2  # the 429 was retried (and logged)
        monkeypatch.setenv(KEY_ENV, KEY + "-revoked")  # a key the server rejects and echoes back (a 401)
        with pytest.raises(ModelError) as rejected:
            session(server, tmp_path, api_key_env=KEY_ENV).generate(items, "prompt_eng", progress=False)
        emitted.append(str(rejected.value))
    assert "Bearer ***" in emitted[0] and "rejected the API key" in emitted[1] and KEY_ENV in emitted[1]
    emitted += [record.getMessage() for record in caplog.records]
    emitted += [path.read_text(encoding="utf-8") for path in tmp_path.rglob("*.json")]
    assert len(emitted) > 4 and [text for text in emitted if KEY in text] == []


def test_a_cached_rerun_needs_no_key_and_a_miss_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with ServedModelServer(api_key=KEY) as server:
        session(server, tmp_path, api_key_env=KEY_ENV).generate(samples(2), "base", progress=False)
        monkeypatch.delenv(KEY_ENV)
        assert all(g.cached for g in session(server, tmp_path, api_key_env=KEY_ENV).generate(samples(2), "base", progress=False))
        with pytest.raises(ModelError, match=f"environment variable {KEY_ENV}, which is not set.*export {KEY_ENV}="):
            session(server, tmp_path, api_key_env=KEY_ENV).generate(samples(3), "base", progress=False)
    assert server.calls == 2


def test_concurrency_is_bounded_and_used(tmp_path: Path) -> None:
    with ServedModelServer(delay_s=0.1) as server:
        session(server, tmp_path, concurrency=3).generate(samples(12), "base", progress=False)
    assert server.calls == 12 and server.max_in_flight == 3


# -- what a server cannot do, adapters, configuration -------------------------------------------


def test_what_a_chat_server_cannot_do_is_a_clear_error(tmp_path: Path) -> None:
    served = ServedSession(ServedConfig("http://127.0.0.1:9/v1", BASE), None, PROMPTS, DecodingConfig(), tmp_path)
    with pytest.raises(ModelError, match=r"remove loglik and perplexity from \[tool.tunegate\] metrics"):
        served.reference_likelihoods(samples(1), "base")
    with pytest.raises(ModelError, match=r'judge.model = "base".*backend = "openai", base_url = "http://127.0.0.1:9/v1"'):
        served.base_weights()
    with pytest.raises(AdapterError, match=r"set \[tool.tunegate.served\] adapter_model_name"):
        served.generate(samples(1), "finetuned", progress=False)
    assert served.adapter_identity is None
    with pytest.raises(ConfigError, match="adapter_model_name"):
        ServedSession(ServedConfig("http://127.0.0.1:9/v1", BASE), tmp_path, PROMPTS, DecodingConfig(), tmp_path)


def test_identities_name_the_served_models_or_the_adapters_content(tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "adapter", b"w")
    config = ServedConfig("http://user:pw@127.0.0.1:9/v1/", BASE, ADAPTER)
    named = ServedSession(config, None, PROMPTS, DecodingConfig(), tmp_path)
    hashed = ServedSession(config, adapter, PROMPTS, DecodingConfig(), tmp_path)
    assert named.base_identity.path == f"{BASE}@http://127.0.0.1:9/v1"
    assert named.adapter_identity.path == f"{ADAPTER}@http://127.0.0.1:9/v1"
    assert hashed.adapter_identity.path == str(adapter.resolve()) and hashed.adapter_identity.sha256 != named.adapter_identity.sha256
    assert "pw" not in repr(named) + str(named.provenance()) + named.device


def test_ablation_adapters_are_requested_under_their_mapped_names(tmp_path: Path) -> None:
    shipped = write_adapter(tmp_path / "shipped", b"a")
    r8 = write_adapter(tmp_path / "runs" / "r8", b"b")
    copy = write_adapter(tmp_path / "runs" / "same", b"a")  # the shipped adapter's content under another path
    unmapped = write_adapter(tmp_path / "runs" / "r16", b"c")
    with ServedModelServer(models=(BASE, ADAPTER, "r8")) as server:
        served = session(server, tmp_path / "cache", adapter_dir=shipped, ablation_model_names={r8.resolve(): "r8"})
        served.generate(samples(1), "finetuned", adapter_dir=r8, progress=False)
        served.generate(samples(1), "finetuned", adapter_dir=copy, progress=False)
        with pytest.raises(AdapterError, match="ablation_model_names"):
            served.generate(samples(1), "finetuned", adapter_dir=unmapped, progress=False)
        with pytest.raises(ValueError, match="finetuned"):
            served.generate(samples(1), "base", adapter_dir=r8, progress=False)
    assert [b["model"] for b in server.bodies] == ["r8", ADAPTER]


def test_the_served_table_is_checked_key_by_key(tmp_path: Path) -> None:
    table = {"base_url": "http://localhost:8000/v1", "base_model_name": "qwen-base", "adapter_model_name": "support",
             "api_key_env": "none", "concurrency": 32, "timeout_s": 120, "ablation_model_names": {"runs/r8": "r8"}}
    config = served_config(table, tmp_path, "pyproject.toml")
    assert config.api_key_env is None and config.timeout_s == 120.0 and config.concurrency == 32
    assert dict(config.ablation_model_names) == {(tmp_path / "runs/r8").resolve(): "r8"}
    wrong = [({**table, "api_key": "x"}, "never write an API key"), ({**table, "concurency": 2}, "Did you mean 'concurrency'"),
             ({**table, "concurrency": 0}, "must be positive"), ({**table, "timeout_s": True}, "must be float or int"),
             ({"base_url": "http://h/v1"}, "base_model_name is missing"),
             ({**table, "base_url": "ftp://h/v1?key=abc"}, "must be an http"),
             ({**table, "ablation_model_names": {"runs/r8": 8}}, "maps adapter directories")]
    for bad, words in wrong:
        with pytest.raises(ConfigError, match=words) as raised:
            served_config(bad, tmp_path, "pyproject.toml")
        assert "abc" not in str(raised.value) and str(raised.value).startswith("pyproject.toml: served")


# -- wired into the run: [tool.tunegate.served] -------------------------------------------------


def test_a_gate_run_configured_with_a_server_generates_and_scores_every_mode(tmp_path: Path) -> None:
    """GateRun with [tool.tunegate.served]: no local model is loaded; each mode asks its served name."""
    from tunegate.config import load_config
    from tunegate.run import GateRun

    (tmp_path / "eval.jsonl").write_text(
        '{"id": "a", "prompt": "Where is order NW-1?", "reference": "Order NW-1 ships today."}\n'
        '{"id": "b", "prompt": "Say hello.", "reference": "Hello!"}\n', encoding="utf-8")
    with ServedModelServer() as server:
        (tmp_path / "pyproject.toml").write_text(
            '[tool.tunegate]\neval_set = "eval.jsonl"\ncache_dir = "cache"\nmax_new_tokens = 16\n'
            'metrics = ["rouge1", "rougeL"]\nsystem_prompt = "Be brief."\n'
            f'[tool.tunegate.served]\nbase_url = "{server.url}"\nbase_model_name = "{BASE}"\n'
            f'adapter_model_name = "{ADAPTER}"\nconcurrency = 2\n', encoding="utf-8")
        run = GateRun(load_config(tmp_path / "pyproject.toml"))
        assert run.modes == ("base", "prompt_eng", "finetuned")
        table = run.score_table()
        asked = sorted({body["model"] for body in server.bodies})
    assert len(table) == 3 * 2 * 2 and asked == sorted([ADAPTER, BASE])
    assert not (tmp_path / "cache" / "models").exists()  # nothing local was loaded or converted
    info = run.provenance()
    assert info["served_base_model"] == BASE and info["served_adapter_model"] == ADAPTER
    assert run.efficiency().summaries["base"].n == 2


def test_what_a_server_cannot_do_is_refused_at_configuration(tmp_path: Path) -> None:
    from tunegate.config import load_config

    (tmp_path / "eval.jsonl").write_text('{"id": "a", "prompt": "p", "reference": "r"}\n', encoding="utf-8")
    served = '[tool.tunegate.served]\nbase_url = "http://127.0.0.1:9/v1"\nbase_model_name = "b"\n'
    for extra, expected in (('metrics = ["rougeL", "loglik"]\n', "need the model's token probabilities"),
                            ('[tool.tunegate.judge]\nbackend = "local"\n', "Judge through the server")):
        head = '[tool.tunegate]\neval_set = "eval.jsonl"\n'
        text = head + extra + served if extra.startswith("metrics") else head + served + extra
        (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=expected):
            load_config(tmp_path / "pyproject.toml")
