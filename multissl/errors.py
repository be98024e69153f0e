"""Errors that mean "the user asked for something that cannot work".

The CLI turns every :class:`UserError` into one clear line on stderr and exit status 2,
without a traceback. Library code raises the most specific subclass and names the file
and record index where it can, e.g. ``DataError("images/cat.jpg: cannot decode image")``.
"""
import sys
from typing import Callable


class UserError(Exception):
    """Base class for mistakes in user input (arguments, files, records)."""


class DataError(UserError, ValueError):
    """A data source or a record in it cannot be used (wrong shape, undecodable, empty...)."""


class ConfigError(UserError, ValueError):
    """An unknown name (adapter, method, encoder) or an invalid hyperparameter."""


def exit_status(prog: str, job: Callable[[], object]) -> int:
    """Run a command-line entry point's ``job()`` and return its exit status.

    0 when ``job`` returns; a :class:`UserError` becomes one line ``prog: error: <message>`` on
    stderr and status 2, without a traceback. argparse's own exit (status 2 on a bad option) and
    every other exception pass through unchanged.

    >>> exit_status("demo", lambda: None)
    0
    """
    try:
        job()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
