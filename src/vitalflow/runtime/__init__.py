"""Running per-case jobs: worker processes, the generic case runner, stop signals, progress.

Knows nothing of what a case produces: preprocessing (`vitalflow.run.preprocess`) is one job on
the runner, batch prediction will be another.
"""
