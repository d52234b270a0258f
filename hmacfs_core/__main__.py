"""Allow ``python -m hmacfs_core``, the same as the ``hmacfs`` command."""

from hmacfs_core.cli import main

raise SystemExit(main())
