"""Package data of ul4m4 (read with importlib.resources; see ul4m4.datasets)."""
