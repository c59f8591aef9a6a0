"""Errors a user can fix; the entrypoints print them as one sentence instead of a traceback."""


class OcrexpError(Exception):
    """A problem the user can fix, described in one sentence that says what to do."""


class ConfigError(OcrexpError):
    """A config value is missing, of the wrong type, or out of range."""


class DataError(OcrexpError):
    """A dataset cannot be found, fetched, verified or parsed."""
