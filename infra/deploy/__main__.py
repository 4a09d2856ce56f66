"""`python -m infra.deploy`: see infra/deploy/__init__.py."""

from infra.deploy.cli import main

raise SystemExit(main())
