"""Error types shown to users.

Every error raised for bad input or bad configuration says what is wrong, where (file, variable,
config key) and how to fix it; the CLI prints the message as one paragraph and exits non-zero.
"""


class GlacierError(Exception):
    """Base class of the package's user-facing errors."""

    exit_code = 2


class ConfigError(GlacierError):
    """A configuration value is missing, misspelt or physically impossible."""


class InputDataError(GlacierError):
    """An input file is missing, malformed or holds values that cannot be used."""


class NumericalError(GlacierError):
    """The solution went non-finite or exceeded its step budget."""

    exit_code = 3
