"""Reacher: dm-control's two-link planar arm (suite reacher/easy), with a goal *joint configuration*.

State = qpos+qvel (shoulder, wrist, their velocities); the shoulder angle is unbounded, the wrist is limited to
+-160 deg. State observation = (cos q, sin q, qvel) (6,). Action = the two joint torques in [-1, 1]^2, one
`control_timestep` of dm-control physics per env step. A task is solved when every joint is within 0.05 rad of the
goal (angles wrapped); distance = L2 norm of the wrapped joint error.

Drawing: the suite's top-down `fixed` camera moved closer so the arm's reach fills the frame, the arm and finger
drawn thicker than their collision geometry (contacts are disabled in this model and the inertias are compiled,
so only the picture changes), and the suite's target sphere hidden: the goal is shown by the goal image, which
is the arm drawn at the goal configuration.
"""
from __future__ import annotations

import mujoco
import numpy as np
from dm_control import suite

from envs.base import EnvConfig, EnvError, GoalEnv, StateVariable, occupied_share

SUCCESS_TOLERANCE = 0.05  # rad, per joint
CAMERA_HEIGHT = 0.62      # the frame spans +-0.26 m at the arm's height; the reach is 0.22 m
DRAW_RADIUS = {"arm": 0.02, "hand": 0.02, "finger": 0.028}
JOINT_GRID = (16, 16)     # coverage: shoulder (wrapped) x wrist (its range) bins, ~0.4 x 0.35 rad each
SLOW_SPEED = 0.5          # rad/s per joint: slower than this moves < 0.05 rad (the tolerance) in a planner step
REACH_KP, REACH_KD, REACH_MAX_STEPS = 3.0, 0.4, 60   # data policy's reach segments (PD on the joint error)


def wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


class ReacherEnv(GoalEnv):
    state_obs_dim = 6
    state_variables = (StateVariable("shoulder", (0,), "angle", task=True),
                       StateVariable("wrist", (1,), "angle", task=True),
                       StateVariable("joint_velocity", (2, 3), "velocity", task=False))
    action_low = np.array([-1.0, -1.0])
    action_high = np.array([1.0, 1.0])

    def __init__(self, cfg: EnvConfig):
        if cfg.options:
            raise EnvError(f"reacher: unknown option(s) {', '.join(sorted(cfg.options))}; it takes none")
        super().__init__(cfg)
        suite_env = suite.load("reacher", "easy")
        self.physics = suite_env.physics
        self.substeps = int(round(suite_env.control_timestep() / self.physics.timestep()))
        model = self.physics.model
        # A warm-started constraint solver (wrist limit) would make the next step depend on more than qpos/qvel.
        model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_WARMSTART
        self.wrist_range = model.jnt_range[model.name2id("wrist", "joint")].copy()
        model.geom_rgba[model.name2id("target", "geom"), 3] = 0.0
        for name, radius in DRAW_RADIUS.items():
            model.geom_size[model.name2id(name, "geom"), 0] = radius
        model.cam_pos[model.name2id("fixed", "camera")] = (0.0, 0.0, CAMERA_HEIGHT)
        camera, size = model.name2id("fixed", "camera"), cfg.image_size
        depth = model.cam_pos[camera, 2] - model.body_pos[model.name2id("arm", "body"), 2]  # to the arm's plane
        self._projection = (  # pixel_xy: link lengths, the camera's xy, pixels per metre in the arm's plane
            model.body_pos[model.name2id("hand", "body"), 0], model.body_pos[model.name2id("finger", "body"), 0],
            model.cam_pos[camera, :2].copy(), size / 2 / np.tan(np.deg2rad(model.cam_fovy[camera]) / 2) / depth)
        model.vis.quality.shadowsize = 0  # 4-6x faster small renders, no visible loss
        model.vis.quality.offsamples = 0
        self._renderer = None  # made on first draw: state-only use never opens a GL context
        self._torque = np.zeros(2)  # data policy: the torque being held (or the reach target) and for how many
        self._target: np.ndarray | None = None                      # more steps; the steps still to dwell there
        self._hold, self._dwell = 0, 0

    # ---- state --------------------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        return np.concatenate([self.physics.data.qpos, self.physics.data.qvel]).astype(np.float64)

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (4,) or not np.all(np.isfinite(state)):
            raise EnvError(f"reacher: state must be 4 finite numbers (q_shoulder, q_wrist, dq_shoulder, dq_wrist), "
                           f"got {state.tolist()}")
        with self.physics.reset_context():
            self.physics.data.qpos[:], self.physics.data.qvel[:] = state[:2], state[2:]
        self._hold = 0

    def _step_physics(self, action: np.ndarray) -> None:
        self.physics.set_control(action)
        self.physics.step(self.substeps)

    def _render_pixels(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.physics.model.ptr, self.cfg.image_size, self.cfg.image_size)
        self._renderer.update_scene(self.physics.data.ptr, camera="fixed")
        return self._renderer.render()

    def pixel_xy(self, states: np.ndarray) -> np.ndarray:
        """The fingertip (the `finger` body) through the top-down `fixed` camera: forward kinematics of the two
        links, then the camera's perspective projection (it looks straight down, world x right and y up). Needs
        no physics, so it works after `close`."""
        q = np.asarray(states, np.float64).reshape(len(states), -1)[:, :2]  # (N, 2) shoulder, wrist
        upper, lower, camera_xy, focal = self._projection
        xy = (upper * np.stack([np.cos(q[:, 0]), np.sin(q[:, 0])], 1)
              + lower * np.stack([np.cos(q.sum(1)), np.sin(q.sum(1))], 1))  # (N, 2) metres
        return self.cfg.image_size / 2 + focal * (xy - camera_xy) * [1.0, -1.0]

    def _state_obs(self) -> np.ndarray:
        q, dq = self.physics.data.qpos, self.physics.data.qvel
        return np.concatenate([np.cos(q), np.sin(q), dq]).astype(np.float32)

    # ---- task ---------------------------------------------------------------------------------------------
    def joint_error(self, state: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
        return wrap(np.asarray(state)[:2] - np.asarray(goal_state)[:2])

    def is_success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        return bool(np.all(np.abs(self.joint_error(state, goal_state)) < SUCCESS_TOLERANCE))

    def distance(self, state: np.ndarray, goal_state: np.ndarray) -> float:
        return float(np.linalg.norm(self.joint_error(state, goal_state)))

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform over the configuration space (shoulder any angle, wrist inside its limits), at rest."""
        q = [rng.uniform(-np.pi, np.pi), rng.uniform(*self.wrist_range)]
        return np.array([*q, 0.0, 0.0])

    def data_action(self, rng: np.random.Generator) -> np.ndarray:
        """Alternating segments. Swing (40 %): a random torque held for 2-15 steps (plus jitter), so the arm swings
        through whole turns instead of dithering. Reach (60 %): a PD controller drives the joints to a random
        configuration (anywhere, half the time within ~0.5 rad of the current one), slows down near it and dwells
        there for 5-20 steps, so slow motion and rest are seen all over the configuration space (goals are
        configurations at rest)."""
        if self._hold == 0:
            if rng.random() < 0.4:
                self._torque, self._target, self._hold = rng.uniform(-1.0, 1.0, 2), None, int(rng.integers(2, 16))
            else:
                q = self.physics.data.qpos.copy()
                near = q + rng.normal(0.0, 0.5, 2)
                far = np.array([rng.uniform(-np.pi, np.pi), 0.0])
                target = near if rng.random() < 0.5 else far
                target[1] = rng.uniform(*self.wrist_range) if target is far else target[1]
                target[1] = np.clip(target[1], *(self.wrist_range + [0.1, -0.1]))
                self._target, self._hold, self._dwell = target, REACH_MAX_STEPS, int(rng.integers(5, 21))
        self._hold -= 1
        if self._target is None:
            return np.clip(self._torque + rng.normal(0.0, 0.1, 2), self.action_low, self.action_high)
        q, dq = self.physics.data.qpos, self.physics.data.qvel
        error = wrap(self._target - q)
        if np.all(np.abs(error) < SUCCESS_TOLERANCE) and np.all(np.abs(dq) < SLOW_SPEED):
            self._dwell -= 1
            if self._dwell <= 0:
                self._hold = 0
        torque = REACH_KP * error - REACH_KD * dq + rng.normal(0.0, 0.05, 2)
        return np.clip(torque, self.action_low, self.action_high)

    def _hold_native(self) -> np.ndarray:
        """The torque that stops both joints within one env step (from the joint-space mass matrix), scaled
        down as a whole when it exceeds the bounds."""
        model, data = self.physics.model.ptr, self.physics.data.ptr
        mass = np.zeros((model.nv, model.nv))
        mujoco.mj_fullM(model, data, mass)
        dt = self.physics.timestep() * self.substeps
        control = mass @ (-data.qvel / dt) / model.actuator_gear[:, 0]
        return control / max(1.0, float(np.abs(control).max()))

    def coverage(self, states: np.ndarray) -> dict[str, float]:
        """joint_cells: occupied share of a 16x16 grid over (shoulder, wrist); slow_share: states with both joint
        speeds < 0.5 rad/s (where a goal configuration can be held); slow_joint_cells: the grid share occupied by
        slow states alone (stopping is seen everywhere, not only in a few places)."""
        flat = np.asarray(states, dtype=np.float64).reshape(-1, 4)
        q = np.stack([wrap(flat[:, 0]), flat[:, 1]], -1)
        low, high = (-np.pi, self.wrist_range[0]), (np.pi, self.wrist_range[1])
        slow = np.all(np.abs(flat[:, 2:4]) < SLOW_SPEED, axis=-1)
        return {"joint_cells": occupied_share(q, low, high, JOINT_GRID), "slow_share": float(slow.mean()),
                "slow_joint_cells": occupied_share(q[slow], low, high, JOINT_GRID)}

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.physics.free()
