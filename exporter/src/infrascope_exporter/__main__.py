"""Allow ``python -m infrascope_exporter``; same as the ``infrascope-exporter`` script."""

from infrascope_exporter.cli import main

raise SystemExit(main())
