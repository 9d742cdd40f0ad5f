"""Command-line entry points (``msf-train``, ``msf-eval``, ...)."""
