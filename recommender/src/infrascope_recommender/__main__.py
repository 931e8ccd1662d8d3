"""Allow ``python -m infrascope_recommender``; same as the ``recommender`` script."""

from infrascope_recommender.cli import main

raise SystemExit(main())
