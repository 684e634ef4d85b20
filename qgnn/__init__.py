"""qgnn: co-design simulator for low-bit graph neural network accelerators.

The distribution is one namespace with five layers; each may import only the layers below it:

- :mod:`qgnn.core` -- shared plumbing (atomic writes, the user-error type, the version) and the
  aggregation engine's timing contract; imports no other part.
- :mod:`qgnn.model` -- the PyTorch reference model, the integer-only path and golden vectors.
- :mod:`qgnn.hw` -- the Amaranth RTL and its cocotb verification (on ``model`` and ``core``).
- :mod:`qgnn.sim` -- the cycle-level simulator (on ``model`` and ``core``; never on ``hw``).
- :mod:`qgnn.sweeps` -- design-space sweeps and the ``qgnn`` command line (on everything).

``tests/test_layering.py`` checks these rules from the sources' imports. Importing ``qgnn``
itself is cheap: it loads no part.
"""

from qgnn.core.version import qgnn_version

__all__ = ["__version__", "qgnn_version"]

__version__ = qgnn_version()
