"""Builds the configured judge backend: a local model (sharing the run's weights when it can) or a remote endpoint.

Kept apart from `tunegate.judge` so the core stays free of torch and openai imports, and from
`tunegate.run` so the choice of backend is one small function a reader can find.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunegate.judge import JudgeBackend, JudgeConfig

if TYPE_CHECKING:
    from tunegate.run import GateRun


def make_judge_backend(config: JudgeConfig, run: GateRun) -> JudgeBackend:
    """The backend `config` names. The local judge on model "base" (or the same directory as the
    run's base model) uses the session's loaded model with the adapter switched off: no second copy."""
    if config.backend == "openai":
        from tunegate.judge_remote import OpenAICompatibleJudge
        from tunegate.retry import RetryPolicy

        return OpenAICompatibleJudge(
            model=config.model,
            base_url=config.base_url,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            concurrency=config.concurrency,
            structured_output=config.structured_output,
            max_output_tokens=config.max_output_tokens,
            retry=RetryPolicy(max_retries=config.max_retries),
        )
    if config.backend != "local":
        raise ValueError(f"no judge backend for {config.backend!r}")
    from tunegate.inference import ModelSession, installed_version
    from tunegate.judge_local import LocalJudge
    from tunegate.models import resolve_base_model

    session = run.session
    if config.model in ("base", run.config.base_model):
        judge_session = session
    else:
        model_dir = resolve_base_model(config.model, run.config.cache_dir)
        judge_session = (
            session
            if Path(model_dir).resolve() == session.base_model_dir.resolve()
            else ModelSession(model_dir, None, {}, run.config.decoding, run.config.cache_dir)
        )
    identity = (
        f"local:{judge_session.base_model_dir.name}:{judge_session.base_identity.sha256[:16]}:{judge_session.dtype}:"
        f"{judge_session.device.split(':')[0]}:torch-{installed_version('torch')}:"
        f"transformers-{installed_version('transformers')}"
    )
    return LocalJudge(
        identity=identity,
        weights=judge_session.base_weights,
        tokenizer=lambda: judge_session.tokenizer,
        device=judge_session.device,
        batch_size=config.batch_size,
        min_mass=config.min_mass,
    )
