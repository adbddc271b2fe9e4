"""``python -m lemmse ...``: the same command line as the ``lemmse`` console script."""
from lemmse.cli.main import main

raise SystemExit(main())
