"""Data: sources (builtin, files, hub), tokenizers, the token cache and the train/val split."""

from .tokens import TokenData, prepare_data

__all__ = ["TokenData", "prepare_data"]
