"""``python -m riskwatch``: the same as the ``riskwatch`` command."""

from riskwatch.cli import main

main()
