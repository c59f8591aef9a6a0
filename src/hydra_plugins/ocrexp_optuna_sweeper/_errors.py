"""The sweeper's user-facing error: one sentence, printed by Hydra without a stack trace."""

from hydra.errors import CompactHydraException

from ocrexp.errors import ConfigError


class SweeperError(ConfigError, CompactHydraException):
    """A sweep cannot start or must stop; the message says why and what to do."""
