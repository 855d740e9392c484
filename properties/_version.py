"""The package version, in one place (the command line and the reports read it)."""

__version__ = "0.1.0"
