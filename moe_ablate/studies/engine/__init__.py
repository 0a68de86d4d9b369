"""How a study runs: pipeline, runner, executors, halving, WSD branching, outputs, and the one owner of
the study folder (folder.py)."""
