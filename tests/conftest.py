import os

# Headless MuJoCo rendering must be chosen before mujoco, dm_control or gymnasium are imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
