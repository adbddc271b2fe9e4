"""Command-line interface: ``lemmse estimate`` and ``lemmse bench`` (see :func:`lemmse.cli.main.main`)."""
