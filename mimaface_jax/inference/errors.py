"""The error ``animate`` and ``export`` report as one line (the message names the file)."""


class AnimateError(ValueError):
    """Bad input to a generation program: printed as ``animate: error: <message>``, exit 1."""
