"""The one exception type that the CLI turns into a single error line and exit code 2."""


class UserError(Exception):
    """A problem with the user's input (flag, config, path, network) rather than a bug.

    The CLI prints ``moe-ablate: error: <message>`` and exits 2; nothing is written.
    """
