"""`python -m agents.ops`: see `agents.ops.cli`."""

from agents.ops.cli import app

app(prog_name="python -m agents.ops")
