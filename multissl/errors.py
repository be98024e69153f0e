"""Errors that mean "the user asked for something that cannot work".

The CLI turns every :class:`UserError` into one clear line on stderr and exit status 2,
without a traceback. Library code raises the most specific subclass and names the file
and record index where it can, e.g. ``DataError("images/cat.jpg: cannot decode image")``.
"""


class UserError(Exception):
    """Base class for mistakes in user input (arguments, files, records)."""


class DataError(UserError, ValueError):
    """A data source or a record in it cannot be used (wrong shape, undecodable, empty...)."""


class ConfigError(UserError, ValueError):
    """An unknown name (adapter, method, encoder) or an invalid hyperparameter."""
