"""The package version, on the lowest floor so that every module can name it."""

__version__ = "0.1.0"
