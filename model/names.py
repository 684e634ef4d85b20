"""Names the command line needs without importing torch (kept equal to model.nn's by a test)."""

#: Model architectures (``model.nn.models.MODEL_NAMES``).
MODEL_NAMES: tuple[str, ...] = ("gcn", "gin", "sage", "decoupled")
