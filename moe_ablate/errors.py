"""The exceptions the CLI turns into a single error line: ``UserError`` (exit 2) and ``StudyFailed`` (exit 1)."""


class UserError(Exception):
    """A problem with the user's input (flag, config, path, network) rather than a bug.

    The CLI prints ``moe-ablate: error: <message>`` and exits 2; nothing is written.
    """


class StudyFailed(Exception):
    """A study ran, but none of its experiments finished: its files are written, and the CLI prints
    ``moe-ablate: error: <message>`` and exits 1 (the input was sound; the runs failed)."""
