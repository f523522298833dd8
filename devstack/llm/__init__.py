"""A local model endpoint (Azure OpenAI and OpenAI REST shapes) with a deterministic reasoner
and faults per deployment; no model, no download."""

from devstack.llm.faults import ModelFaults
from devstack.llm.server import DEFAULT_PORT, LocalModelServer

__all__ = ["DEFAULT_PORT", "LocalModelServer", "ModelFaults"]
