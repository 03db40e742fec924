"""Tests for tunegate/taxonomy.py on answers whose failure is known by construction."""

from __future__ import annotations

import pytest

from tunegate.data import Sample
from tunegate.inference import Generation
from tunegate.taxonomy import (
    LABELS,
    Diagnosis,
    Failure,
    FormatExpectations,
    classify,
    diagnose,
    failure_counts,
    units,
    worst_examples,
)

PROMPT = "I was charged $64.90 twice for order NW-48213. Can I get a refund?"
REFERENCE = "Sorry about the double charge. We will refund the duplicate payment within 5 business days."
SAMPLE = Sample("refund_1", PROMPT, REFERENCE)
ZH_SAMPLE = Sample("zh_1", "我的订单还没到，怎么办？", "很抱歉给您带来不便。请提供订单号，我们会在24小时内为您查询物流。", lang="zh")


def answer(text: str, *, finish_reason: str = "stop", sample: Sample = SAMPLE, mode: str = "finetuned") -> Generation:
    return Generation(sample.id, mode, text, finish_reason, prompt_tokens=40, output_tokens=96, latency_s=0.1)


def labels(sample: Sample, text: str, **kwargs) -> tuple[str, ...]:
    return tuple(f.label for f in classify(sample, answer(text, sample=sample, **kwargs)))


def test_a_good_answer_has_no_failure() -> None:
    assert classify(SAMPLE, answer("Sorry for the double charge on order NW-48213: we will refund the "
                                   "$64.90 duplicate payment within 5 business days.")) == ()


def test_units_count_cjk_characters_and_latin_words() -> None:
    assert units("订单 A1234 已发货！ＯＫ, café") == ["订", "单", "a1234", "已", "发", "货", "ok", "café"]


# --- under- and over-generation --------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n", "…"])
def test_empty_answer_is_under_generation(text: str) -> None:
    (failure,) = classify(SAMPLE, answer(text))
    assert (failure.label, failure.evidence, failure.severity) == ("under_generation", "empty answer", 1.0)


def test_much_shorter_than_the_reference_is_under_generation() -> None:
    (failure,) = classify(SAMPLE, answer("We will refund it."))  # 4 units vs 15
    assert failure.label == "under_generation" and "4 units vs 15" in failure.evidence
    assert labels(SAMPLE, "We will refund the duplicate payment soon.") == ()  # 7 of 15: terse, not under


def test_short_reference_makes_no_ratio_claim() -> None:
    assert labels(Sample("yes", "Is it waterproof?", "Yes, it is fully waterproof."), "Yes.") == ()


def test_length_limited_answer_is_over_generation() -> None:
    (failure,) = classify(SAMPLE, answer("We will refund the duplicate payment within", finish_reason="length"))
    assert failure.label == "over_generation" and "hit max_new_tokens (96 tokens" in failure.evidence


def test_length_limit_is_allowed_where_the_sample_allows_truncation() -> None:
    sample = Sample("long", PROMPT, REFERENCE, allow_truncation=True)
    assert labels(sample, "We will refund the duplicate payment within", finish_reason="length") == ()


def test_much_longer_than_the_reference_is_over_generation() -> None:
    rambling = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(50))  # 50 units vs 15, no repeats
    (failure,) = classify(SAMPLE, answer(rambling))
    assert failure.label == "over_generation" and "50 units vs 15" in failure.evidence


# --- repetition loops ------------------------------------------------------------------------


def test_english_loop_is_a_repetition_loop() -> None:
    text = "I can help with that. " + "Please contact support " * 5
    failure = next(f for f in classify(SAMPLE, answer(text)) if f.label == "repetition_loop")
    assert '"please contact support" repeated 5x back to back (15 of 20 units)' in failure.evidence


def test_chinese_loop_is_a_repetition_loop() -> None:
    text = "您好，" + "请联系客服" * 4  # no punctuation between copies: only the back-to-back rule sees it
    (failure,) = classify(ZH_SAMPLE, answer(text, sample=ZH_SAMPLE))
    assert failure.label == "repetition_loop"
    assert '"请联系客服" repeated 4x back to back (20 of 22 units)' in failure.evidence


def test_sentence_repeated_with_text_between_is_a_repetition_loop() -> None:
    text = ("We will refund the payment. Thanks for waiting. We will refund the payment. Your order is safe. "
            "We will refund the payment.")
    (failure,) = classify(SAMPLE, answer(text))
    assert failure.label == "repetition_loop"
    assert failure.evidence == 'sentence "we will refund the payment" occurs 3 times'


@pytest.mark.parametrize("text", [
    "No, no, no, that charge was a mistake and we will refund the duplicate payment within 5 business days.",
    "It is very, very light. We will refund the duplicate payment within 5 business days, sorry.",
    "哈哈哈，很抱歉给您带来不便。请提供订单号，我们会在24小时内为您查询物流。",
])
def test_emphasis_is_not_a_loop(text: str) -> None:
    sample = ZH_SAMPLE if "哈" in text else SAMPLE
    assert "repetition_loop" not in labels(sample, text)


def test_a_loop_cut_at_the_limit_carries_both_labels() -> None:
    assert labels(SAMPLE, "Sorry about that. " * 20, finish_reason="length") == ("over_generation", "repetition_loop")


# --- likely hallucination --------------------------------------------------------------------


def test_numbers_and_ids_absent_from_prompt_and_reference_are_likely_hallucination() -> None:
    sample = Sample("refund_2", "I was charged twice. Can I get a refund?", REFERENCE)
    (failure,) = classify(sample, answer("Your refund of $64.90 for NW-48213 is on its way."))
    assert failure.label == "likely_hallucination"
    assert failure.evidence == 'not in prompt or reference: "NW-48213" (id), "$64.90" (amount)'
    assert failure.severity == 2.0


def test_numbers_copied_from_the_prompt_are_not_hallucination() -> None:
    # 64.9 is 64.90 by value; "nw48213" is NW-48213 ignoring case and hyphen
    assert labels(SAMPLE, "Your refund of $64.9 for nw48213 is on its way.") == ()


def test_percentages_links_and_names_are_checked() -> None:
    text = "Hello! Ask Sarah Jones at help@acme.example, or see https://acme.example/r. About 15% are refunded."
    (failure,) = classify(SAMPLE, answer(text))
    for item in ('"help@acme.example" (link)', '"https://acme.example/r" (link)', '"15%" (percentage)',
                 '"Sarah Jones" (name)'):
        assert item in failure.evidence
    assert '"Hello"' not in failure.evidence and '"About"' not in failure.evidence  # sentence openers


def test_list_numbers_and_supported_capitals_are_not_hallucination() -> None:
    text = "Here is what happens:\n1. We refund the duplicate payment.\n2. It takes 5 business days, Sorry."
    assert labels(SAMPLE, text) == ()


def test_chinese_answer_ids_are_checked_without_word_boundaries() -> None:
    (failure,) = classify(ZH_SAMPLE, answer("已为您查询，订单号NW-48213将在24小时内送达，运费￥12。", sample=ZH_SAMPLE))
    assert failure.label == "likely_hallucination"
    assert '"NW-48213" (id)' in failure.evidence and '"¥12" (amount)' in failure.evidence  # ￥ folded by NFKC
    assert "24" not in failure.evidence  # the reference says 24小时


def test_the_system_prompt_passed_as_context_supports_facts() -> None:
    text = "Our hotline is 800-555-0199 and returns are free for 30 days, as always."
    assert "likely_hallucination" in labels(SAMPLE, text)
    assert classify(SAMPLE, answer(text), context=["Hotline 800-555-0199. Free returns for 30 days."]) == ()


# --- format errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "evidence"), [
    ("<|im_start|>assistant\nWe will refund the duplicate payment within 5 business days.",
     'chat-template token "<|im_start|>"'),
    ("We will refund the duplicate payment within 5 business days.<|im_end|>", 'chat-template token "<|im_end|>"'),
    ("assistant: We will refund the duplicate payment within 5 business days.", 'role prefix "assistant:"'),
    ("We will refund the duplicate payment within 5 business days.\nUser: thanks", 'role prefix "User:"'),
    ("助手：我们会在5个工作日内退还重复扣款，请耐心等待处理结果。", 'role prefix "助手："'),
])
def test_template_leftovers_are_format_errors(text: str, evidence: str) -> None:
    failures = [f for f in classify(SAMPLE, answer(text)) if f.label == "format_error"]
    assert failures and evidence in failures[0].evidence


def test_json_expected_by_tag_must_parse() -> None:
    sample = Sample("j", "Give the refund as JSON.", '{"refund": 64.9, "order": "NW-48213"}', tags=("json",))
    (failure,) = classify(sample, answer('{"refund": 64.9, "order": "NW-48213"', sample=sample))
    assert failure.label == "format_error" and failure.evidence.startswith("expected JSON, does not parse")
    assert classify(sample, answer('```json\n{"refund": 64.9, "order": "NW-48213"}\n```', sample=sample)) == ()
    untagged = Sample("j", sample.prompt, sample.reference)
    assert classify(untagged, answer('{"refund": 64.9, "order": "NW-48213"', sample=untagged)) == ()
    expect_all = FormatExpectations(json_always=True)
    assert classify(untagged, answer("refund 64.9 for NW-48213", sample=untagged), expectations=expect_all)


def test_required_and_forbidden_markers_are_format_errors() -> None:
    sample = Sample("m", PROMPT, REFERENCE, must_include=("NW-48213",), must_not_include=("guarantee",))
    (failure,) = classify(sample, answer("We guarantee a refund of the duplicate payment within 5 business days.",
                                         sample=sample))
    assert failure.evidence == 'missing required text "NW-48213"; contains forbidden text "guarantee"'
    off = FormatExpectations(sample_markers=False, required_markers=("Northwind",))
    (failure,) = classify(sample, answer("We guarantee a refund of NW-48213 within 5 business days, sorry.",
                                         sample=sample), expectations=off)
    assert failure.evidence == 'missing required text "Northwind"'


# --- over a mode: diagnose, counts, worst examples -------------------------------------------


def _mode(mode: str, texts: list[str], finish: list[str] | None = None) -> list[Diagnosis]:
    samples = [Sample(f"s{i}", PROMPT, REFERENCE) for i in range(len(texts))]
    finish = finish or ["stop"] * len(texts)
    return diagnose(samples, [Generation(s.id, mode, t, f, 40, 96, 0.1) for s, t, f in zip(samples, texts, finish)])


def test_failure_counts_per_mode() -> None:
    good = "We will refund the duplicate $64.90 payment for NW-48213 within 5 business days."
    diagnoses = _mode("base", ["", "Sorry. " * 12, good], ["stop", "length", "stop"]) + _mode("finetuned", [good, good])
    counts = failure_counts(diagnoses)
    assert list(counts) == ["base", "finetuned"] and list(counts["base"].counts) == list(LABELS)
    assert counts["base"].answers == 3 and counts["base"].counts == {
        "under_generation": 1, "over_generation": 1, "repetition_loop": 1, "likely_hallucination": 0, "format_error": 0}
    assert str(counts["base"]) == "base: 1 under_generation, 1 over_generation, 1 repetition_loop in 3 answers"
    assert str(counts["finetuned"]) == "finetuned: no failures in 2 answers"


def test_worst_examples_rank_by_severity_within_each_label() -> None:
    diagnoses = _mode("base", ["Refund.", "We will refund it.", "", "Sorry about that. " * 4 + "We refund it."])
    worst = worst_examples(diagnoses, n=2)
    assert list(worst) == list(LABELS)
    assert [d.sample_id for d in worst["under_generation"]] == ["s2", "s0"]  # empty, then 1 of 15 units
    assert [d.sample_id for d in worst["repetition_loop"]] == ["s3"] and worst["format_error"] == []


def test_diagnose_classifies_only_the_requested_samples_and_checks_alignment() -> None:
    samples = [Sample("a", PROMPT, REFERENCE), Sample("b", PROMPT, REFERENCE)]
    generations = [answer("", sample=samples[0]), answer("", sample=samples[1])]
    (only_b,) = diagnose(samples, generations, sample_ids={"b"})
    assert (only_b.sample_id, only_b.labels) == ("b", ("under_generation",))
    assert str(only_b) == "finetuned/b: under_generation: empty answer"
    with pytest.raises(ValueError, match="not aligned"):
        diagnose(samples, generations[::-1])


def test_failure_renders_label_and_evidence() -> None:
    assert str(Failure("format_error", 'role prefix "assistant:"', 1.0)) == 'format_error: role prefix "assistant:"'
