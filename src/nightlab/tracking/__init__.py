"""The tracking room: the MLflow mirror process (mirror.py) and a trial's own run
(trial_run.py)."""
