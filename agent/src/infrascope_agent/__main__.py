"""Allow ``python -m infrascope_agent``; same as the ``infrascope-agent`` script."""

from infrascope_agent.cli import main

raise SystemExit(main())
