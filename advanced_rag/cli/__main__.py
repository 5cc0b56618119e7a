"""``python -m advanced_rag.cli`` is the ``advanced-rag`` command."""

from . import main

raise SystemExit(main())
