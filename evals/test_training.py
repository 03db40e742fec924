"""Training evidence: the adapter's own trainer_state.json (beside the adapter, or [tool.tunegate] training_state).

Fails when validation loss turned up for `overfit_patience` evaluations while training loss kept
falling and the shipped adapter comes from after that point, or when training loss went NaN or
exploded; the message says where training should have stopped and the Trainer settings that would
have stopped it. The loss plot is in the report.
"""


def test_training_curve(training_verdict):
    assert training_verdict.passed, training_verdict.message
