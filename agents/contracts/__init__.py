"""Event types that cross an agent's boundary, each with the JSON Schema of its `data`, in
the module of the agent that publishes it (see README.md)."""
