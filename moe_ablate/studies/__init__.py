"""Studies: spec expansion, the resumable runner, and one module per study kind."""
