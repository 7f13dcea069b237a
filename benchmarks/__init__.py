"""Benchmarks: run each as a module from the repo root, e.g. `python -m benchmarks.planner_sweep env=wall` or
`torchrun --nproc_per_node=2 -m benchmarks.planner_sweep ...`. Where the project is installed (`.ci/setup` runs
`pip install -e .`), `python benchmarks/<name>.py` works as well. They import the packages (agent, envs,
planners, worldmodels, configs) and each other as `benchmarks.<name>`, never train.py or evaluate.py.

  planner_sweep  success and time to success of every planner over horizons on identical tasks (the README tables)
  planner_speed  ms per planner iteration over horizons and batch sizes
  train_speed    seconds per world-model training step per env
  env_speed      env steps per second, single and batched
  model_cards    the model card table of world-model checkpoints
  cli            `key=value` arguments of the small benchmarks
"""
