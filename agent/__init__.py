"""Closed-loop control with a latent planner: the MPC loop (`agent.mpc`) and its TensorBoard logging (`agent.logging`).

Depends on planners and world models only through their small interfaces; envs are driven through `envs.EnvBatch`.
"""
from agent.mpc import AgentError, Episode, MPCAgent, MPCConfig, PlanRecord, shift_plan

__all__ = ["AgentError", "Episode", "MPCAgent", "MPCConfig", "PlanRecord", "shift_plan"]
