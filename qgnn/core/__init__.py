"""Shared plumbing every part of qgnn may import; it imports none of them.

- :mod:`qgnn.core.atomic` -- atomic file output.
- :mod:`qgnn.core.errors` -- :class:`CLIError`, a user error reported as one line.
- :mod:`qgnn.core.version` -- the installed version.
- :mod:`qgnn.core.timing` -- the aggregation engine's timing contract (cycles), which the RTL's
  testbenches assert and the simulator evaluates.
"""
