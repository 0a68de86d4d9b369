"""Studies, in three layers that import downwards only:

- ``spec/``: what the user wrote (the TOML file and its schema) and the study as stored in ``config.json``;
- ``kinds/``: what a study means: one file per kind behind one contract (``kinds/base.py``) and the registry
  (``kinds/__init__.py``) that the command line reads;
- ``engine/``: how any study runs: the pipeline, runner and executors, halving, WSD branching, outputs, and
  ``folder.py``, the one owner of a study folder's layout.
"""
