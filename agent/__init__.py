"""Closed-loop control with a latent planner: the MPC loop (`agent.mpc`), running and summarising evaluation episodes
(`agent.evaluation`, used by evaluate.py and the benchmarks), interrupting and resuming an evaluation
(`agent.resume`), torchrun sharding (`agent.sharding`), TensorBoard logging (`agent.logging`) and planner-in-the-loop
data collection (`agent.collect`, `python -m agent.collect`).

The MPC loop depends on planners and world models only through their small interfaces and drives envs through
`envs.EnvBatch`; `agent.evaluation` also loads world-model checkpoints and makes the EnvBatches.
"""
from agent.mpc import AgentError, Episode, MPCAgent, MPCConfig, PlanRecord, shift_plan

__all__ = ["AgentError", "Episode", "MPCAgent", "MPCConfig", "PlanRecord", "shift_plan"]
