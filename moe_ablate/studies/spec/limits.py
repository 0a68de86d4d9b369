"""The bounds of a study's own numbers, one place for the flag and the TOML boundary and the stored-study check.

Each is far beyond any real study and small enough that the tool never enumerates, allocates or loops on a
number a typo made (``seeds = 1000000000000000`` expanded its experiment list until it was killed).
"""

MAX_CONFIGURATIONS = 100_000  # a larger grid needs --max-experiments (it is never enumerated whole)
MAX_RUNS = 100_000  # configurations x seeds of one study
MAX_SEEDS = 1_000  # seeds per configuration
MAX_CONFIRM = 100  # extra seeds per confirmed configuration
MAX_CONFIRM_CONFIGS = 10_000
MAX_HALVING = 1_000  # successive halving's ETA
MAX_STEPS = 10 ** 9  # steps of a run (a rung, a target run)
MAX_LRS = 1_000  # learning rates listed for one search
MAX_LR = 1e3  # beyond that every run diverges at once
MAX_CI_FACTOR = 100.0  # a designed ladder's asked 95% CI of an optimum, as hi/lo (a factor 100 asks nothing)
MAX_BATCH = 2 ** 20  # a strategy's batch size
MAX_SEQ = 2 ** 24  # a strategy's sequence length
MAX_ACCUM = 2 ** 16  # a strategy's gradient accumulation
MAX_SCALE = 1_024  # a [scale.*] divisor
