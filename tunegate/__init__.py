"""tunegate: a pytest-native release gate for fine-tuned LLMs.

The data flow, one module per step (see DESIGN in README.md):

    eval set (JSONL/JSON)        -> Sample                          data.py
    [tool.tunegate] + CLI        -> GateConfig (frozen)             config.py
    base model (+ demo cache)    -> local directory, content hash   models.py
    ModelSession (loads once)    -> Generation per sample and mode  inference.py  (cache.py on disk)
    ROUGE-1/2/L, BERTScore       -> per-sample values               metrics.py
    long frame sample×mode×metric                                   scores.py
    GateRun: lazy per-mode orchestration of the above               run.py
    bootstrap intervals                                             stats.py
    verdicts with evidence       -> GateResult                      gates.py
    plots and HTML fragments                                        report.py
    pytest glue (options, fixtures, parametrisation, report hooks)  plugin.py

Modes: `base` (no system prompt of ours), `prompt_eng` (same weights, engineered system prompt),
`finetuned` (base + adapter). The library never imports pytest outside plugin.py.
"""

__version__ = "0.1.0"
