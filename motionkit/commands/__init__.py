"""Subcommands of the ``motionkit`` CLI, one module each."""
