"""Studies: specs, the stored study, the one runner and pipeline, executors, and the study kinds."""
