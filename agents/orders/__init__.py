"""The orders agent: an order saga (reserve stock -> charge payment -> allocate -> ship)
with compensations, its HTTP edge, and simulated inventory, payment and shipping services."""
