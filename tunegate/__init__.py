"""tunegate: a pytest-native release gate for fine-tuned LLMs.

The data flow, one module per step (see DESIGN in README.md):

    eval set (JSONL/JSON)        -> Sample                          data.py
    [tool.tunegate] + CLI        -> GateConfig (frozen)             config.py
    base model (+ demo cache)    -> local directory, content hash   models.py
    ModelSession (loads once)    -> Generation per sample and mode  inference/  (cache.py on disk)
    work shared by xdist workers, batches that fit in memory        claims.py, batching.py
    reference log-likelihood (only the references' positions)      likelihood.py
    ROUGE, BLEU, chrF, METEOR, BERTScore -> per-sample values       metrics.py
    long frame sample×mode×metric                                   scores.py
    LLM judge (reference, blind, pairwise; local or remote)         judge*.py, retry.py
    GateRun: lazy per-mode orchestration of the above               run.py
    bootstrap intervals, paired tests, Holm                         stats.py
    verdicts with evidence       -> GateResult                      gates.py, baseline.py
    trainer_state.json           -> LossCurve -> Divergence         training_state.py, overfitting.py
    sweep runs on the one base   -> curves, best vs every run       ablation/
    Sample + Generation          -> failure labels with evidence    taxonomy.py
    plots and HTML fragments                                        report/
    results.json, summary.md (one document)                         results.py
    the session's report files, built once                          artifacts.py
    pytest glue (options, fixtures, parametrisation, report hooks)  plugin.py
    pytest-xdist: a device per worker, the workers' accounts merged workers.py

Modes: `base` (no system prompt of ours), `prompt_eng` (same weights, engineered system prompt),
`finetuned` (base + adapter). The library never imports pytest outside plugin.py.
"""

__version__ = "0.1.0"
