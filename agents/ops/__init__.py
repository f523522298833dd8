"""Operations: dead-letter inspection and replay, parked poison events, Event Grid
dead-letter blobs, outbox status (`python -m agents.ops`, and a read-only HTTP view).

One module per source (`deadletters`, `poison`, `eventgrid`, `outbox`) holds the logic; the
CLI (`cli.py`) and the Blueprint (`blueprint.py`) only render it.
"""
