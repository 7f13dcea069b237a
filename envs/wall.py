"""Wall: a point moving in a square arena split into two rooms by a vertical wall with one door.

Our own two-room navigation task, modelled on the wall experiments of DINO-WM / PLDM / GRASP but not their
environment: DINO-WM's DotWall differs in geometry (a 65-px image, a 6-px wall, its own door settings, a Gaussian
dot, steps of 0.2-1.8 px), so numbers on this env are not comparable with theirs. Here: a 64x64 arena, a 4-px wall
(x in [30, 34]) with a 12-px door (by default), an anti-aliased disc of radius 2, moves of up to 2 px per native
step. Coordinates are in 64-pixel image units (arena [0, 64]^2, x to the right, y down, as in the image), and the
field's wall threshold ||xy - goal|| < 4.5 is used in those units.
State = (x, y) of the point's centre. A native action in [-1, 1]^2 moves the point by `MAX_STEP * action`.

Collisions: the point is a disc of radius `AGENT_RADIUS`; its centre may not enter the wall segments grown by that
radius, nor leave the arena shrunk by it. A move is swept against those boxes: the point stops at the first face it
hits and slides along it with the rest of the move, so it can never tunnel through the wall, only pass the door.

Options (`EnvConfig.options`): `door_y` (centre of the door, default 32) and `door_width` (default 12).
"""
from __future__ import annotations

import numpy as np

from envs.base import EnvConfig, EnvError, GoalEnv, StateVariable, occupied_share

ARENA = 64.0
WALL_X, WALL_HALF = 32.0, 2.0            # the wall occupies x in [30, 34]
AGENT_RADIUS = 2.0
MAX_STEP = 2.0                           # displacement per env step at |action| = 1
SUCCESS_DISTANCE = 4.5
FAR = 1e6                                # "infinite" extent of the boxes outside the arena
BACKGROUND, WALL_COLOR, AGENT_COLOR = (0, 0, 0), (170, 170, 170), (255, 60, 30)
DEFAULT_OPTIONS = {"door_y": 32.0, "door_width": 12.0}

# data policy: an Ornstein-Uhlenbeck walk on the action, interrupted by segments that drive through the door
WALK_CORR, WALK_STD = 0.9, 0.8
SEEK_PROB, SEEK_MAX_STEPS = 0.01, 60


class WallEnv(GoalEnv):
    action_low = -np.ones(2)
    action_high = np.ones(2)
    state_obs_dim = 2
    state_variables = (StateVariable("xy", (0, 1), "position", task=True),)
    default_options = DEFAULT_OPTIONS

    def __init__(self, cfg: EnvConfig):
        unknown = sorted(set(cfg.options) - set(DEFAULT_OPTIONS))
        if unknown:
            raise EnvError(f"wall: unknown option(s) {', '.join(unknown)}; valid: {', '.join(DEFAULT_OPTIONS)}")
        opts = {**DEFAULT_OPTIONS, **cfg.options}
        self.door_y, self.door_width = float(opts["door_y"]), float(opts["door_width"])
        if not 2 * AGENT_RADIUS + 1 <= self.door_width <= ARENA / 2:
            raise EnvError(f"wall: door_width={self.door_width} out of range [{2 * AGENT_RADIUS + 1}, {ARENA / 2}]")
        door_lo, door_hi = self.door_y - self.door_width / 2, self.door_y + self.door_width / 2
        if door_lo < 2 * AGENT_RADIUS or door_hi > ARENA - 2 * AGENT_RADIUS:
            raise EnvError(f"wall: door_y={self.door_y} puts the door (width {self.door_width}) outside "
                           f"[{2 * AGENT_RADIUS}, {ARENA - 2 * AGENT_RADIUS}]")
        super().__init__(cfg)
        r, x0, x1 = AGENT_RADIUS, WALL_X - WALL_HALF, WALL_X + WALL_HALF
        # boxes (x_lo, x_hi, y_lo, y_hi) the point's centre must stay out of (open interiors)
        self.blocked = np.array([
            [x0 - r, x1 + r, -FAR, door_lo + r],          # wall above the door
            [x0 - r, x1 + r, door_hi - r, FAR],           # wall below the door
            [-FAR, r, -FAR, FAR], [ARENA - r, FAR, -FAR, FAR],
            [-FAR, FAR, -FAR, r], [-FAR, FAR, ARENA - r, FAR],
        ])
        size = cfg.image_size
        self.scale = size / ARENA
        centres = (np.arange(size) + 0.5) / self.scale   # pixel centres in arena units
        in_wall = ((centres[None, :] >= x0) & (centres[None, :] <= x1)
                   & ((centres[:, None] < door_lo) | (centres[:, None] > door_hi)))   # (rows=y, cols=x)
        self.background = np.where(in_wall[..., None], np.array(WALL_COLOR, np.float32),
                                   np.array(BACKGROUND, np.float32))                  # (S, S, 3)
        self.pixel_centres = centres
        self.xy = np.array([ARENA / 4, ARENA / 2])
        self._walk = np.zeros(2)
        self._seek: list[np.ndarray] = []
        self._seek_steps = 0

    # ---- state ---------------------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        return self.xy.copy()

    def set_state(self, state: np.ndarray) -> None:
        """Also restarts the data policy (its momentum belongs to one trajectory)."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (2,) or not np.all(np.isfinite(state)):
            shown = np.array2string(state, precision=3, max_line_width=10**6)
            raise EnvError(f"wall: state must be 2 finite numbers (x, y), got {shown}")
        self.xy = state.copy()
        self._walk = np.zeros(2)
        self._seek, self._seek_steps = [], 0

    def in_free_space(self, xy: np.ndarray) -> bool:
        b = self.blocked
        inside = (b[:, 0] < xy[0]) & (xy[0] < b[:, 1]) & (b[:, 2] < xy[1]) & (xy[1] < b[:, 3])
        return not inside.any()

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        while True:
            xy = rng.uniform(AGENT_RADIUS, ARENA - AGENT_RADIUS, size=2)
            if self.in_free_space(xy):
                return xy

    # ---- physics -------------------------------------------------------------------------------------------
    def _step_physics(self, action: np.ndarray) -> None:
        self.xy = self.move(self.xy, MAX_STEP * action)

    def move(self, xy: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Sweep `xy` by `delta` against the blocked boxes: stop at the first face hit, slide along it."""
        p, d = xy.astype(np.float64).copy(), delta.astype(np.float64).copy()
        for _ in range(3):  # each hit removes one axis of the remaining move, so 3 passes always finish
            if not d.any():
                break
            t_hit, axis, face = 1.0, -1, 0.0
            for x_lo, x_hi, y_lo, y_hi in self.blocked:
                t_enter, t_exit, enter_axis, enter_face = -np.inf, np.inf, -1, 0.0
                for k, lo, hi in ((0, x_lo, x_hi), (1, y_lo, y_hi)):
                    if d[k] == 0:
                        if not lo < p[k] < hi:
                            t_enter = np.inf  # parallel and outside this slab: no hit
                        continue
                    t_lo, t_hi = (lo - p[k]) / d[k], (hi - p[k]) / d[k]
                    t0, t1 = min(t_lo, t_hi), max(t_lo, t_hi)
                    if t0 > t_enter:
                        t_enter, enter_axis, enter_face = t0, k, lo if d[k] > 0 else hi
                    t_exit = min(t_exit, t1)
                if enter_axis >= 0 and t_enter < t_exit and t_exit > 0 and t_enter < t_hit:
                    t_hit, axis, face = max(t_enter, 0.0), enter_axis, enter_face
            if axis < 0:
                return p + d
            p = p + t_hit * d
            p[axis] = face      # exactly on the face (not a rounding error inside it)
            d = (1 - t_hit) * d
            d[axis] = 0.0
        return p

    # ---- observation ---------------------------------------------------------------------------------------
    def draw(self, xy: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 image of the point at `xy` (anti-aliased disc, so sub-pixel moves change the image)."""
        c = self.pixel_centres
        dist = np.sqrt((c[None, :] - xy[0]) ** 2 + (c[:, None] - xy[1]) ** 2) * self.scale   # (S, S) pixels
        alpha = np.clip(AGENT_RADIUS * self.scale + 0.5 - dist, 0.0, 1.0)[..., None]
        frame = self.background * (1 - alpha) + np.array(AGENT_COLOR, np.float32) * alpha
        return np.round(frame).astype(np.uint8)

    def _render_pixels(self) -> np.ndarray:
        return self.draw(self.xy)

    def _state_obs(self) -> np.ndarray:
        return self.xy.astype(np.float32)

    # drawing is a pure function of the state here, so these skip the set/restore round trip of the base class
    # (which would also restart the data policy)
    def observe_state(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        return self.draw(state) if self.cfg.obs_type == "pixels" else state.astype(np.float32)

    def pixel_xy(self, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, np.float64).reshape(-1, 2)[:, :2] * self.scale   # the point's centre

    def render_state(self, state: np.ndarray) -> np.ndarray:
        return self.draw(np.asarray(state, dtype=np.float64))

    # ---- task ----------------------------------------------------------------------------------------------
    def distance(self, state: np.ndarray, goal_state: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(state)[:2] - np.asarray(goal_state)[:2]))

    def is_success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        return self.distance(state, goal_state) < SUCCESS_DISTANCE

    def data_action(self, rng: np.random.Generator) -> np.ndarray:
        """A momentum random walk; now and then a segment that drives to the door and through it to the
        other room, so door crossings are common in the data."""
        if not self._seek and rng.random() < SEEK_PROB:
            side = -1.0 if self.xy[0] < WALL_X else 1.0
            half_gap = self.door_width / 2 - AGENT_RADIUS - 0.5
            y = self.door_y + rng.uniform(-half_gap, half_gap)
            self._seek = [np.array([WALL_X + side * (WALL_HALF + AGENT_RADIUS + 4), y]),
                          np.array([WALL_X - side * (WALL_HALF + AGENT_RADIUS + rng.uniform(4, 20)), y])]
            self._seek_steps = 0
        if self._seek:
            self._seek_steps += 1
            to_target = self._seek[0] - self.xy
            if np.linalg.norm(to_target) < 0.5 or self._seek_steps > SEEK_MAX_STEPS:
                self._seek.pop(0)
                self._seek_steps = 0
                if not self._seek:
                    self._walk = np.clip(to_target / MAX_STEP, -1, 1)   # leave the segment with its momentum
            step = to_target / MAX_STEP
            return np.clip(step / max(1.0, np.abs(step).max()) + rng.normal(0, 0.1, 2), -1, 1)
        self._walk = WALK_CORR * self._walk + np.sqrt(1 - WALK_CORR ** 2) * WALK_STD * rng.normal(size=2)
        return np.clip(self._walk, -1, 1)

    def _hold_native(self) -> np.ndarray:
        return np.zeros(2)   # the point has no momentum: a zero move keeps it where it is

    def coverage(self, states: np.ndarray) -> dict[str, float]:
        """cells_visited: occupied share of a 16x16 grid over the arena (the wall's cells can never be occupied);
        crossing_share: episodes whose point changes room at least once."""
        states = np.asarray(states, dtype=np.float64)
        side = states[..., 0] < WALL_X
        crossed = (side[:, 1:] != side[:, :-1]).any(axis=1)
        return {"cells_visited": occupied_share(states.reshape(-1, 2), (0, 0), (ARENA, ARENA), (16, 16)),
                "crossing_share": float(crossed.mean())}
