"""The version of paramcalc (one place: the package, its exports and the CLI read it here)."""

__version__ = "0.2.0"
