"""The node agent: roles, configuration, the agent itself, its HTTP face and the dashboard."""

from mycelium.node._agent import Agent
from mycelium.node._config import ConfigError, NodeConfig
from mycelium.node._roles import Capacity, Decision, Member, PlacementPolicy, Role

__all__ = ["Agent", "Capacity", "ConfigError", "Decision", "Member", "NodeConfig", "PlacementPolicy", "Role"]
