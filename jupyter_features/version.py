"""The installed release of jupyter-features."""

__version__ = "0.1.0"
