"""What the user wrote: the study TOML (file.py, schema.py) and the study as stored (stored.py)."""
