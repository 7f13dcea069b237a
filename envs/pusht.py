"""Push-T: gym-pusht's circular agent pushing a T-shaped block on a 512x512 table (pymunk, drawn with pygame).

Action = the agent's target position in [0, 512]^2; one env step is gym-pusht's own step (PD control of the
kinematic agent towards the target, 10 physics substeps, 0.1 s).

State (10,) = agent x, y | block x, y, angle | agent vx, vy | block vx, vy, angular velocity. The first five are
gym-pusht's state observation (block x, y = the body origin, i.e. the middle of the T's bar); the velocities make
the state complete: the agent's velocity drives the PD controller and the block's moves it at the start of the
next substep. Every env step starts from a fresh pymunk space built from that state (pymunk would otherwise
warm-start contacts from impulses cached in the previous step), so `set_state(get_state())` is exact even
mid-push. The block's angle is set before its position so the position reads back exactly (gym-pusht's legacy
`_set_state` does the opposite and then steps once, so the state it reports differs from the one it was given).

State observation (8,) = agent xy and block xy scaled to [-1, 1], cos and sin of the block angle (no wrap jump),
agent velocity / 512 (Markov for the PD-driven agent; the block's velocity only matters for one substep).

Success: block position error < 20 px and wrapped block angle error < pi/9 (the agent may be anywhere);
distance = block position error in px. gym-pusht's fixed green target T is moved off the table before drawing:
here the goal is whatever the goal image shows.
"""
from __future__ import annotations

import numpy as np
import pygame
from gym_pusht.envs.pusht import PushTEnv as GymPushT

from envs.base import EnvConfig, EnvError, GoalEnv

TABLE = 512.0
POS_TOLERANCE, ANGLE_TOLERANCE = 20.0, np.pi / 9
AGENT_RADIUS = 15.0        # gym-pusht's agent circle
BLOCK_REACH = 80.0         # the T's farthest point from its centre of gravity is ~76 px
APPROACH_RADIUS = BLOCK_REACH + AGENT_RADIUS + 10.0  # the data policy circles the block this far out
WALL_MARGIN = 10.0         # the border walls lie along 5 and 506 with radius 2
OFF_TABLE = np.array([-1e4, -1e4, 0.0])


def wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


class PushTEnv(GoalEnv):
    state_obs_dim = 8
    action_low = np.array([0.0, 0.0])
    action_high = np.array([TABLE, TABLE])

    def __init__(self, cfg: EnvConfig):
        if cfg.options:
            raise EnvError(f"pusht: unknown option(s) {', '.join(sorted(cfg.options))}; it takes none")
        super().__init__(cfg)
        self._sim = GymPushT(obs_type="state", render_mode="rgb_array")
        self._sim.reset(seed=0)  # builds the space; every state is then set through set_state
        self._push = None  # data policy: (unit push direction, remaining push steps) or None while approaching

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
        self._sim.step(action)

    def _render_pixels(self) -> np.ndarray:
        size = self.cfg.image_size
        # smoothscale averages the 512x512 table down (no aliasing of the thin T); surfarray is (x, y, 3)
        small = pygame.transform.smoothscale(self._sim._draw(), (size, size))
        return np.ascontiguousarray(pygame.surfarray.array3d(small).transpose(1, 0, 2))

    def _state_obs(self) -> np.ndarray:
        s = self.get_state()
        return np.concatenate([s[0:4] / (TABLE / 2) - 1, np.cos(s[4:5]), np.sin(s[4:5]), s[5:7] / TABLE]
                              ).astype(np.float32)

    # ---- task ---------------------------------------------------------------------------------------------
    def is_success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        angle_error = abs(wrap(np.asarray(state)[4] - np.asarray(goal_state)[4]))
        return self.distance(state, goal_state) < POS_TOLERANCE and angle_error < ANGLE_TOLERANCE

    def distance(self, state: np.ndarray, goal_state: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(state)[2:4] - np.asarray(goal_state)[2:4]))

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
        """A noisy scripted pusher. Pick a random push direction through the block's centre; circle around the
        block (clear of it) to the side opposite that direction; then drive through the centre for 8-25 steps;
        repeat. Gaussian noise on every target and an occasional random target keep the data diverse."""
        agent = np.array(self._sim.agent.position)
        block = self._sim.block
        centre = np.array(block.local_to_world(block.center_of_gravity))
        if rng.random() < 0.05:
            return rng.uniform(self.action_low, self.action_high)
        if self._push is None:
            self._push = [self._push_direction(centre, rng), 0]
        direction, pushed = self._push
        if pushed:  # pushing: a target a little ahead keeps a steady ~200 px/s push
            target = agent + 40.0 * direction
            self._push[1] -= 1
            if self._push[1] == 0:
                self._push = None
        else:
            start = centre - APPROACH_RADIUS * direction
            target = self._approach(agent, centre, start)
            if np.linalg.norm(start - agent) < 15.0:  # in position behind the block
                self._push[1] = int(rng.integers(8, 26))
        return np.clip(target + rng.normal(0.0, 8.0, 2), self.action_low, self.action_high)

    def _push_direction(self, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random direction whose start point (behind the block) lies on the table; towards the middle if none."""
        for _ in range(20):
            angle = rng.uniform(-np.pi, np.pi)
            direction = np.array([np.cos(angle), np.sin(angle)])
            start = centre - APPROACH_RADIUS * direction
            if np.all((start > 20) & (start < TABLE - 20)):
                return direction
        towards_middle = TABLE / 2 - centre
        return towards_middle / max(np.linalg.norm(towards_middle), 1e-6)

    def _approach(self, agent: np.ndarray, centre: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Next waypoint towards the push start: out to the circle around the block, then along it at most
        45 deg at a time, so the agent does not shove the block on its way."""
        offset = agent - centre
        distance = max(np.linalg.norm(offset), 1e-6)
        if distance < APPROACH_RADIUS - 5.0:
            return centre + APPROACH_RADIUS * offset / distance
        angle = np.arctan2(offset[1], offset[0])
        turn = wrap(np.arctan2(start[1] - centre[1], start[0] - centre[0]) - angle)
        if abs(turn) < np.pi / 4:
            return start
        angle += np.sign(turn) * np.pi / 4
        return centre + APPROACH_RADIUS * np.array([np.cos(angle), np.sin(angle)])

    def close(self):
        self._sim.close()
