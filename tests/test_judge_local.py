"""Tests for tunegate.judge_local: the G-Eval style judge on the real demo model (SmolLM2-135M)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunegate.data import Sample
from tunegate.errors import JudgeError
from tunegate.inference import DecodingConfig, ModelSession
from tunegate.judge import DIMENSIONS, build_requests, run_judge
from tunegate.judge_local import LocalJudge, _following_token

pytestmark = pytest.mark.slow

SAMPLES = [
    Sample(id="refund", prompt="How long do refunds take?", reference="Refunds reach your card within 5 business days."),
    Sample(id="track", prompt="Where is order NW-10426?", reference="Order NW-10426 left our warehouse and arrives Friday."),
    Sample(id="lock", prompt="My account is locked.", reference="Reset your password from the login page; it unlocks at once."),
]
ANSWERS = {
    "base": ["I don't know.", "Please wait.", "Contact support."],
    "finetuned": [
        "Refunds reach your card within 5 business days.",
        "Order NW-10426 left our warehouse and arrives Friday.",
        "Reset your password from the login page to unlock it.",
    ],
}


@pytest.fixture(scope="module")
def session(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelSession:
    return ModelSession(demo_model_dir, None, {}, DecodingConfig(), tmp_path_factory.mktemp("cache"))


def local_judge(session: ModelSession, **options) -> LocalJudge:
    return LocalJudge(identity="local:test", weights=session.base_weights, tokenizer=lambda: session.tokenizer,
                      device=session.device, batch_size=4, **options)


def test_scores_are_expected_values_within_the_scale_and_deterministic(session: ModelSession) -> None:
    requests = build_requests("reference", SAMPLES, ANSWERS)
    first = dict(local_judge(session).judge(requests))
    second = dict(local_judge(session).judge(requests))
    assert sorted(first) == list(range(len(requests)))
    for index, reply in first.items():
        assert reply.ok, reply.error
        assert set(reply.scores) == set(DIMENSIONS)
        assert all(1.0 <= v <= 5.0 for v in reply.scores.values())
        assert reply.scores == second[index].scores
        assert reply.reasoning.startswith("accuracy P(1-5) ") and reply.input_tokens > 100 and reply.calls == 0


def test_sharing_the_rubric_prefix_changes_no_score(session: ModelSession) -> None:
    requests = build_requests("blind", SAMPLES, ANSWERS)
    shared = dict(local_judge(session, share_prefix=True).judge(requests))
    plain = dict(local_judge(session, share_prefix=False).judge(requests))
    for index in shared:
        for dimension in DIMENSIONS:
            assert shared[index].scores[dimension] == pytest.approx(plain[index].scores[dimension], abs=1e-4)


def test_too_little_probability_on_the_scores_is_a_judge_error_and_not_cached(session: ModelSession, tmp_path: Path) -> None:
    requests = build_requests("reference", SAMPLES[:2], {"finetuned": ANSWERS["finetuned"][:2]})
    replies = run_judge(local_judge(session, min_mass=1.0), requests, tmp_path, progress=False)
    assert all(not r.ok for r in replies)
    assert "of its probability on the scores 1-5 for accuracy (min_mass 100%)" in replies[0].error
    assert not (tmp_path / "judge").exists() or not list((tmp_path / "judge").rglob("*.json"))


def test_pairwise_picks_a_side_or_a_tie_in_both_orders(session: ModelSession) -> None:
    requests = build_requests("pairwise", SAMPLES, ANSWERS, opponent="base")
    replies = dict(local_judge(session).judge(requests))
    assert len(replies) == 2 * len(SAMPLES)
    assert all(r.ok and r.winner in ("A", "B", "tie") for r in replies.values())
    assert all(r.reasoning.startswith("P(A/B/tie) ") for r in replies.values())


def test_a_cached_rerun_does_not_touch_the_model(session: ModelSession, tmp_path: Path) -> None:
    requests = build_requests("reference", SAMPLES, {"finetuned": ANSWERS["finetuned"]})
    run_judge(local_judge(session), requests, tmp_path, progress=False)

    def no_weights():
        raise AssertionError("a cached rerun must not load or use the model")

    unused = LocalJudge(identity="local:test", weights=no_weights, tokenizer=no_weights, device="cpu")
    again = run_judge(unused, requests, tmp_path, progress=False)
    assert all(r.cached and r.ok for r in again)


def test_a_tokenizer_that_merges_the_score_into_the_prefix_is_refused(session: ModelSession) -> None:
    with pytest.raises(JudgeError, match="merges 'A' into 'Choice: '"):
        _following_token(session.tokenizer, "Choice: ", "A")
