"""Allow ``python -m sandbox_supervisor`` as an alias of the console script."""

from sandbox_supervisor.cli import main

raise SystemExit(main())
