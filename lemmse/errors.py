"""One exception type for every bad input, so the CLI can print it as one line."""


class LemmseInputError(ValueError):
    """Raised before any heavy work when an argument, file or array is unusable.

    The message always names the offending value (flag, key, file, shape or σ).
    """
