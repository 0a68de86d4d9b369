"""moe_ablate: hyperparameter ablation studies for small Mixture-of-Experts language models.

Library entry points (the CLI is a thin layer over these):

- ``config.ExperimentConfig`` / ``config.preset_config``: typed settings and presets
- ``data.prepare_data``: tokenise once (cached), disjoint train/val split
- ``models.build_model``: the model registry
- ``train.train``: one experiment → one result record
- ``studies``: a study kind's ``make_study`` → ``studies.pipeline.run_study`` (runner, resume, outputs)
- ``analysis``: ranking with noise, statistics, figures, report (``studies.outputs.analyze_folder``)
"""

__version__ = "0.1.0"
