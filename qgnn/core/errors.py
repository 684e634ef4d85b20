"""The error type for mistakes in a user's input, shared by every part's command line."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user error: reported as one ``qgnn: error:`` line, exit status 2."""
