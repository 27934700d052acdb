"""ndcore's built-in adapters, registered through the ``ndcore`` entry points like any plugin."""
