"""devstack: the Azure services a function app needs, locally, offline, with no Docker.

A general tool: it imports nothing from `agents/`.
"""
