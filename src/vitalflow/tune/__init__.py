"""Hyper-parameter search (``vitalflow tune``): an Optuna study over train configs.

`vitalflow.tune.space` reads the tune config (a base train config and the search space);
`vitalflow.tune.study` runs the study in ``STUDY_DIR/study.db`` and writes the best trial's config.
The command (`vitalflow.cli`) then trains that config like ``vitalflow train`` and registers it.
"""
