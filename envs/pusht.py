"""Push-T: gym-pusht's circular agent pushing a T-shaped block on a 512x512 table (pymunk, drawn with pygame).

Action: the agent's target position (gym-pusht's PD control of the kinematic agent towards it, 10 physics
substeps, 0.1 s per env step). With `options.relative_actions: false` (the default, gym-pusht's own convention)
the action is the absolute target in [0, 512]^2, so zero means "go to the corner", not "stay". With
`relative_actions: true` it is the target's offset from the agent's current position, in [-100, 100]^2 px (mapped
back to an absolute target, clipped to the table, before every native step): zero means "hold", a constant offset
d drives the agent at ~5 d px/s. Both give the same physics; the data policy produces the same trajectories in
either (it picks a target and expresses it in the env's convention). A world model trained with one convention
must be used with the same one.

State (10,) = agent x, y | block x, y, angle | agent vx, vy | block vx, vy, angular velocity. The first five are
gym-pusht's state observation (block x, y = the body origin, i.e. the middle of the T's bar); the velocities make
the state complete: the agent's velocity drives the PD controller and the block's moves it at the start of the
next substep. Every env step starts from a fresh pymunk space built from that state (pymunk would otherwise
warm-start contacts from impulses cached in the previous step), so `set_state(get_state())` is exact even
mid-push. The block's angle is set before its position so the position reads back exactly (gym-pusht's legacy
`_set_state` does the opposite and then steps once, so the state it reports differs from the one it was given).

State observation (8,) = agent xy and block xy scaled to [-1, 1], cos and sin of the block angle (no wrap jump),
agent velocity / 512 (Markov for the PD-driven agent; the block's velocity only matters for one substep).

Success, the field's criterion (stable-worldmodel / DINO-WM `eval_state`): ||state[:4] - goal[:4]|| < 20 px over
agent xy AND block xy jointly, and wrapped block angle error < pi/9 (20 deg). distance = max(that position error
in px, the angle error in degrees): success is exactly distance < 20. Our earlier block-only criterion (block
position error < 20 and angle error < pi/9, agent anywhere) is reported as the info key `block_success`.
gym-pusht's fixed green target T is moved off the table before drawing: here the goal is whatever the goal image
shows.
"""
from __future__ import annotations

import numpy as np
import pygame
from gym_pusht.envs.pusht import PushTEnv as GymPushT

from envs.base import EnvConfig, EnvError, GoalEnv, StateVariable, occupied_share

TABLE = 512.0
POS_TOLERANCE, ANGLE_TOLERANCE = 20.0, np.pi / 9
DEG_PER_PX = np.rad2deg(ANGLE_TOLERANCE) / POS_TOLERANCE   # distance: 1 deg of angle error counts as 1 px
MAX_OFFSET = 100.0         # relative actions: |target - agent| per axis (a steady ~500 px/s at the bound)
AGENT_RADIUS = 15.0        # gym-pusht's agent circle
BLOCK_REACH = 80.0         # the T's farthest point from its centre of gravity is ~76 px
APPROACH_RADIUS = BLOCK_REACH + AGENT_RADIUS + 10.0  # the data policy circles the block this far out
WALL_MARGIN = 10.0         # the border walls lie along 5 and 506 with radius 2
OFF_TABLE = np.array([-1e4, -1e4, 0.0])


# the T in the block's body frame (gym-pusht's add_tee, scale 30): bar and stem as (x_lo, x_hi, y_lo, y_hi)
TEE_BOXES = np.array([[-60.0, 60.0, 0.0, 30.0], [-15.0, 15.0, 30.0, 120.0]])
CONTACT_SLACK = 2.0        # coverage: the agent's disc within this many px of the T counts as touching it
POSE_GRID = (6, 6, 8)      # coverage: block x, y over [100, 400]^2 (the start region) x angle bins


def wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def tee_gap(agent_xy: np.ndarray, block_xy: np.ndarray, block_angle: np.ndarray) -> np.ndarray:
    """Distance (N,) from each agent centre (N, 2) to the T at pose (N, 2), (N,) (0 inside); numpy, no pymunk."""
    offset = np.asarray(agent_xy, np.float64) - block_xy
    c, s = np.cos(block_angle), np.sin(block_angle)
    local = np.stack([c * offset[:, 0] + s * offset[:, 1], -s * offset[:, 0] + c * offset[:, 1]], -1)  # R(-angle)
    gaps = []
    for x_lo, x_hi, y_lo, y_hi in TEE_BOXES:
        dx = np.maximum(np.maximum(x_lo - local[:, 0], local[:, 0] - x_hi), 0.0)
        dy = np.maximum(np.maximum(y_lo - local[:, 1], local[:, 1] - y_hi), 0.0)
        gaps.append(np.hypot(dx, dy))
    return np.minimum(*gaps)


class PushTEnv(GoalEnv):
    state_obs_dim = 8
    state_variables = (StateVariable("agent_xy", (0, 1), "position", task=True),    # success: agent and block
                       StateVariable("block_xy", (2, 3), "position", task=True),    # xy jointly, and the angle
                       StateVariable("block_angle", (4,), "angle", task=True),
                       StateVariable("agent_velocity", (5, 6), "velocity", task=False),
                       StateVariable("block_velocity", (7, 8), "velocity", task=False),
                       StateVariable("block_angular_velocity", (9,), "velocity", task=False))
    default_options = {"relative_actions": False}

    def __init__(self, cfg: EnvConfig):
        unknown = sorted(set(cfg.options) - {"relative_actions"})
        if unknown:
            raise EnvError(f"pusht: unknown option(s) {', '.join(unknown)}; valid: relative_actions")
        self.relative_actions = cfg.options.get("relative_actions", self.default_options["relative_actions"])
        if not isinstance(self.relative_actions, bool):
            raise EnvError(f"pusht: relative_actions={self.relative_actions!r}: must be true or false")
        bound = np.array([MAX_OFFSET, MAX_OFFSET])
        self.action_low, self.action_high = (-bound, bound) if self.relative_actions else (np.zeros(2),
                                                                                            np.full(2, TABLE))
        super().__init__(cfg)
        self._sim = GymPushT(obs_type="state", render_mode="rgb_array")
        self._sim.reset(seed=0)  # builds the space; every state is then set through set_state
        self._push: dict | None = None  # data policy: the current push (see data_action)

    # ---- state --------------------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        agent, block = self._sim.agent, self._sim.block
        return np.array([*agent.position, *block.position, block.angle,
                         *agent.velocity, *block.velocity, block.angular_velocity], dtype=np.float64)

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (10,) or not np.all(np.isfinite(state)):
            raise EnvError(f"pusht: state must be 10 finite numbers (agent xy, block xy, angle, agent vxy, "
                           f"block vxy, block angular velocity), got {state.tolist()}")
        self._build(state)
        self._push = None

    def _build(self, state: np.ndarray) -> None:
        """A fresh pymunk space holding `state`: no contact impulses cached from earlier steps."""
        self._sim._setup()
        self._sim.goal_pose = OFF_TABLE
        agent, block = self._sim.agent, self._sim.block
        agent.position, agent.velocity = state[0:2].tolist(), state[5:7].tolist()
        block.angle = state[4]
        block.position = state[2:4].tolist()
        block.velocity, block.angular_velocity = state[7:9].tolist(), state[9]
        for shape in self._sim.space.shapes:
            shape.cache_bb()  # shapes' world geometry (drawing, queries) is otherwise refreshed only by a step

    def _step_physics(self, action: np.ndarray) -> None:
        self._build(self.get_state())  # forget the contacts cached by the previous step (see the module doc)
        if self.relative_actions:
            action = np.clip(np.asarray(self._sim.agent.position) + action, 0.0, TABLE)
        self._sim.step(action)

    def _hold_native(self) -> np.ndarray:
        """Target = the agent's current position (offset 0): the PD controller brakes it to rest there."""
        return np.zeros(2) if self.relative_actions else np.array(self._sim.agent.position)

    def _target_action(self, target: np.ndarray) -> np.ndarray:
        """The native action that aims the agent at `target` (at most MAX_OFFSET px ahead per axis)."""
        agent = np.array(self._sim.agent.position)
        offset = np.clip(target - agent, -MAX_OFFSET, MAX_OFFSET)
        return offset if self.relative_actions else np.clip(agent + offset, 0.0, TABLE)

    def _render_pixels(self) -> np.ndarray:
        size = self.cfg.image_size
        # smoothscale averages the 512x512 table down (no aliasing of the thin T); surfarray is (x, y, 3)
        small = pygame.transform.smoothscale(self._sim._draw(), (size, size))
        return np.ascontiguousarray(pygame.surfarray.array3d(small).transpose(1, 0, 2))

    def pixel_xy(self, states: np.ndarray) -> np.ndarray:
        """The agent's centre (what the planner moves; the block shows on the frame): the frame is the 512-unit
        table scaled to image_size, x right and y down (pymunk drawn with positive_y_is_up=False)."""
        return np.asarray(states, np.float64).reshape(len(states), -1)[:, :2] * (self.cfg.image_size / TABLE)

    def _state_obs(self) -> np.ndarray:
        s = self.get_state()
        return np.concatenate([s[0:4] / (TABLE / 2) - 1, np.cos(s[4:5]), np.sin(s[4:5]), s[5:7] / TABLE]
                              ).astype(np.float32)

    # ---- task ---------------------------------------------------------------------------------------------
    @staticmethod
    def errors(state: np.ndarray, goal_state: np.ndarray) -> tuple[float, float, float]:
        """(||agent xy, block xy - goal's|| px, ||block xy - goal's|| px, |wrapped block angle error| rad)."""
        state, goal_state = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
        return (float(np.linalg.norm(state[:4] - goal_state[:4])), float(np.linalg.norm(state[2:4] - goal_state[2:4])),
                float(abs(wrap(state[4] - goal_state[4]))))

    def is_success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        position, _, angle = self.errors(state, goal_state)
        return position < POS_TOLERANCE and angle < ANGLE_TOLERANCE

    def distance(self, state: np.ndarray, goal_state: np.ndarray) -> float:
        position, _, angle = self.errors(state, goal_state)
        return max(position, np.rad2deg(angle) / DEG_PER_PX)

    def task_info(self, state: np.ndarray, goal_state: np.ndarray) -> dict:
        _, block, angle = self.errors(state, goal_state)
        return {"block_success": bool(block < POS_TOLERANCE and angle < ANGLE_TOLERANCE)}

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """gym-pusht's start distribution (agent in [50, 450]^2, block in [100, 400]^2, any angle, at rest),
        redrawn while the agent overlaps the block or the block pokes into the table's border walls."""
        current = self.get_state()
        while True:
            state = np.zeros(10)
            state[0:2], state[2:4] = rng.uniform(50, 450, 2), rng.uniform(100, 400, 2)
            state[4] = rng.uniform(-np.pi, np.pi)
            self.set_state(state)
            corners = self._sim.get_keypoints(self._sim.block.shapes)  # (8, 2)
            clear = min(shape.point_query(tuple(state[0:2])).distance for shape in self._sim.block.shapes)
            if clear > AGENT_RADIUS and np.all((corners > WALL_MARGIN) & (corners < TABLE - WALL_MARGIN)):
                self.set_state(current)
                return state

    def data_action(self, rng: np.random.Generator) -> np.ndarray:
        """A noisy scripted pusher that spends most of its steps touching the block. A push is a line through a
        point of the block (up to 35 px beside its centre of gravity, so pushes also turn it) in some direction;
        the agent circles around the block, clear of it, to just behind the block on that line, then drives along
        it at ~10-15 px per step for 10-30 steps, or until it slides past the block or the block nears a wall.
        The next push mostly turns the previous direction a little (so the agent is already nearly behind the
        block), sometimes picks a fresh one. Gaussian noise on every target and an occasional random target
        keep the data diverse; targets are at most MAX_OFFSET px ahead per axis in both action conventions."""
        agent = np.array(self._sim.agent.position)
        block = self._sim.block
        centre = np.array(block.local_to_world(block.center_of_gravity))
        if rng.random() < 0.03:
            return self._target_action(agent + rng.uniform(-MAX_OFFSET, MAX_OFFSET, 2))
        if self._push is None or self._push["done"]:
            self._push = self._new_push(centre, None if self._push is None else self._push["direction"], rng)
        push = self._push
        direction, through = push["direction"], centre + push["offset"] * push["side"]
        if push["steps"] > 0:  # pushing: a target a little ahead keeps a steady push
            target = agent + push["speed"] * direction
            push["steps"] -= 1
            slid_past = np.dot(agent - through, direction) > 0
            near_wall = np.any((centre < 70) | (centre > TABLE - 70)) and np.dot(centre - TABLE / 2, direction) > 0
            push["done"] = push["steps"] == 0 or slid_past or near_wall
        else:
            start = self._behind(through, direction)
            target = self._approach(agent, centre, start)
            if np.linalg.norm(start - agent) < 12.0:  # in position behind the block
                push["steps"] = int(rng.integers(10, 31))
        return self._target_action(target + rng.normal(0.0, 5.0, 2))

    def _new_push(self, centre: np.ndarray, previous: np.ndarray | None, rng: np.random.Generator) -> dict:
        """A push direction (mostly the previous one turned by ~30 deg) whose start lies on the table and which
        does not drive the block into a wall; towards the middle if none is found."""
        direction = None
        for _ in range(20):
            if previous is not None and rng.random() < 0.7:
                angle = np.arctan2(previous[1], previous[0]) + rng.normal(0.0, np.pi / 6)
            else:
                angle = rng.uniform(-np.pi, np.pi)
            candidate = np.array([np.cos(angle), np.sin(angle)])
            start, end = centre - APPROACH_RADIUS * candidate, centre + 150.0 * candidate
            if np.all((start > 20) & (start < TABLE - 20)) and np.all((end > 80) & (end < TABLE - 80)):
                direction = candidate
                break
        if direction is None:
            towards_middle = TABLE / 2 - centre
            direction = towards_middle / max(np.linalg.norm(towards_middle), 1e-6)
        return {"direction": direction, "side": np.array([-direction[1], direction[0]]),
                "offset": rng.uniform(-35.0, 35.0), "speed": rng.uniform(20.0, 30.0), "steps": 0, "done": False}

    def _behind(self, through: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """The point on the push line, behind the block, where the agent's disc is 3 px clear of the T."""
        block = self._sim.block
        backs = np.arange(0.0, APPROACH_RADIUS + 1.0, 3.0)
        points = through - backs[:, None] * direction
        clear = tee_gap(points, np.array(block.position)[None], np.full(len(backs), block.angle)) > AGENT_RADIUS + 3.0
        if clear.any():
            return points[np.argmax(clear)]
        return through - APPROACH_RADIUS * direction

    def _approach(self, agent: np.ndarray, centre: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Next waypoint towards the push start: out to the circle around the block, then along it at most
        45 deg at a time, so the agent does not shove the block on its way; straight in once within 45 deg."""
        offset = agent - centre
        distance = max(np.linalg.norm(offset), 1e-6)
        angle = np.arctan2(offset[1], offset[0])
        turn = wrap(np.arctan2(start[1] - centre[1], start[0] - centre[0]) - angle)
        if abs(turn) < np.pi / 4:
            return start
        if distance < APPROACH_RADIUS - 5.0:
            return centre + APPROACH_RADIUS * offset / distance
        angle += np.sign(turn) * np.pi / 4
        return centre + APPROACH_RADIUS * np.array([np.cos(angle), np.sin(angle)])

    def coverage(self, states: np.ndarray) -> dict[str, float]:
        """contact_share: states with the agent touching the T; block_moving_share: planner steps that move the
        block (> 1 px or > 1 deg); block_pose_cells: occupied share of a 6x6 (block xy over [100, 400]^2) x 8
        (angle) grid."""
        states = np.asarray(states, dtype=np.float64)
        flat = states.reshape(-1, states.shape[-1])
        gap = tee_gap(flat[:, 0:2], flat[:, 2:4], flat[:, 4])
        step = states[:, 1:] - states[:, :-1]
        moving = (np.linalg.norm(step[..., 2:4], axis=-1) > 1.0) | (np.abs(wrap(step[..., 4])) > np.pi / 180)
        pose = np.concatenate([flat[:, 2:4], wrap(flat[:, 4:5])], -1)
        return {"contact_share": float((gap < AGENT_RADIUS + CONTACT_SLACK).mean()),
                "block_moving_share": float(moving.mean()),
                "block_pose_cells": occupied_share(pose, (100, 100, -np.pi), (400, 400, np.pi), POSE_GRID)}

    def close(self):
        self._sim.close()
