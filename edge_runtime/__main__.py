"""`python -m edge_runtime` runs the CLI."""

from edge_runtime.cli import main

raise SystemExit(main())
