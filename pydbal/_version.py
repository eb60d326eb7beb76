"""The version of this package (read by hatch from here, see pyproject.toml)."""

__version__ = "0.1.0.dev0"
