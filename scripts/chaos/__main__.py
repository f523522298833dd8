"""`python -m scripts.chaos` (`make chaos`): see `scripts/chaos/__init__.py`."""

from scripts.chaos.run import cli

cli()
