"""moe_ablate: hyperparameter ablation studies for small Mixture-of-Experts language models.

Library entry points (the CLI is a thin layer over these):

- ``config.ExperimentConfig`` / ``config.preset_config``: typed settings and presets
- ``data.prepare_data``: tokenise once (cached), disjoint train/val split
- ``models.build_model``: the model registry
- ``train.train``: one experiment → one result record
- ``studies``: grids from TOML, the resumable runner
- ``analysis.analyze_study``: statistics, plots, report
"""

__version__ = "0.1.0"
