"""Exception type raised by :mod:`model.datasets`."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(RuntimeError):
    """A dataset could not be resolved, obtained, parsed or validated.

    The message is meant for humans: it names the dataset, the offending
    file(s) or parameter(s), and what to do about it.  Library code never
    raises bare ``OSError``/``ValueError``/``pickle`` errors for problems with
    the data itself; those are wrapped (and chained) in a ``DatasetError``.
    """
