"""PointMaze: gymnasium-robotics' force-actuated ball in a maze (MuJoCo), drawn top-down.

The maze model, its physics and its one-step dynamics (velocity clip at 5, then `frame_skip` MuJoCo steps) come
from gymnasium-robotics; its goal sampling, target sphere and oblique camera are bypassed. State = ball qpos+qvel
(x, y, vx, vy), which is also the state observation. Action = a 2-D force in [-1, 1]^2 (the model's ctrlrange).
A task is solved when the ball is within 0.5 of the goal position (the threshold used in the field).
"""
from __future__ import annotations

import contextlib
import io
import os
from collections import deque

import mujoco
import numpy as np

from envs.base import EnvConfig, EnvError, GoalEnv, StateVariable

with contextlib.redirect_stderr(io.StringIO()):  # the package prints an unrelated Adroit notice on import
    from gymnasium_robotics.envs.maze import maps
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv as RoboticsPointMaze

LAYOUTS = {"UMaze": maps.U_MAZE, "Medium": maps.MEDIUM_MAZE}
SUCCESS_RADIUS = 0.5
BALL_DRAW_RADIUS = 0.25  # the ball's site is drawn larger than its 0.1 collision sphere so it shows at 64x64
HOLD_GAIN = 5.0          # braking force per unit velocity: stops the ball from full speed in ~15 env steps
START_JITTER = 0.25      # uniform jitter around a free cell's centre; the ball (radius 0.1) stays off the walls
ROUTE_KP, ROUTE_KD = 2.0, 0.3  # data policy's corridor-following PD towards cell centres
STOP_KP, STOP_KD = 3.0, 1.5  # data policy's stopping PD: from rest 0.6 away it settles within 0.05 in < 125 steps
DWELL_STEPS = (10, 41)   # native steps the data policy rests at each stop (2-8 planner steps of 5)
STOP_SHARE = 0.5         # share of the data policy's target cells where it stops; it passes through the others


class PointMazeEnv(GoalEnv):
    state_obs_dim = 4
    state_variables = (StateVariable("xy", (0, 1), "position", task=True),
                       StateVariable("velocity", (2, 3), "velocity", task=False))
    default_options = {"layout": "UMaze"}
    data_policy_revision = 2  # 2: stops at a random point of half its target cells and rests there

    def __init__(self, cfg: EnvConfig):
        unknown = sorted(set(cfg.options) - {"layout"})
        if unknown:
            raise EnvError(f"pointmaze: unknown option(s) {', '.join(unknown)}; valid: layout")
        layout = cfg.options.get("layout", self.default_options["layout"])
        if layout not in LAYOUTS:
            raise EnvError(f"pointmaze: unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
        self.grid = np.array(LAYOUTS[layout]) == 1  # (rows, cols) True where a wall block stands
        self._maze = RoboticsPointMaze(maze_map=LAYOUTS[layout])
        os.remove(self._maze.tmp_xml_file_path)  # the generated model file it leaves in /tmp; already loaded
        self._point = self._maze.point_env
        self.model, self.data = self._point.model, self._point.data
        self.action_low, self.action_high = self.model.actuator_ctrlrange.T.copy()
        super().__init__(cfg)

        # A warm-started constraint solver would make the next step depend on the previous one beyond qpos/qvel.
        self.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_WARMSTART
        self.free_cells = np.argwhere(~self.grid)  # (F, 2) row, col
        self.model.site_rgba[self._maze.target_site_id, 3] = 0.0
        ball_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "particle_site")
        self.model.site_size[ball_site, 0] = BALL_DRAW_RADIUS
        self.model.site_rgba[ball_site] = (1.0, 0.85, 0.1, 1.0)
        self.model.vis.quality.shadowsize = 0  # 4-6x faster small renders, no visible loss
        self.model.vis.quality.offsamples = 0
        self._renderer = None  # made on first draw: state-only use never opens a GL context
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.orthographic = 1
        self._camera.lookat[:] = (0.0, 0.0, 0.0)
        # An orthographic free camera shows the height a perspective one would show at `distance`: fit the maze.
        half_fov = np.deg2rad(self.model.vis.global_.fovy) / 2
        self._camera.distance = max(self.grid.shape) / (2 * np.tan(half_fov))
        self._camera.elevation, self._camera.azimuth = -90.0, 90.0
        self._route: deque = deque()  # data policy: cell centres still to pass; then the point to stop at and the
        self._stop, self._dwell, self._seen = None, None, set()  # steps still to rest there (None: not arrived yet)

    # ---- state --------------------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (4,) or not np.all(np.isfinite(state)):
            raise EnvError(f"pointmaze: state must be 4 finite numbers (x, y, vx, vy), got {state.tolist()}")
        self.data.qpos[:], self.data.qvel[:] = state[:2], state[2:]
        mujoco.mj_forward(self.model, self.data)
        self._route.clear()
        self._stop, self._dwell, self._seen = None, None, set()

    def _step_physics(self, action: np.ndarray) -> None:
        self._point.step(action)

    def _render_pixels(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.cfg.image_size, self.cfg.image_size)
        self._renderer.update_scene(self.data, camera=self._camera)
        return self._renderer.render()

    def pixel_xy(self, states: np.ndarray) -> np.ndarray:
        """The ball's centre: the top-down orthographic camera shows max(grid.shape) world units around (0, 0),
        x to the right and y up."""
        xy = np.asarray(states, np.float64).reshape(len(states), -1)[:, :2]
        size, extent = self.cfg.image_size, float(max(self.grid.shape))
        return np.stack([(xy[:, 0] / extent + 0.5) * size, (0.5 - xy[:, 1] / extent) * size], axis=1)

    def _state_obs(self) -> np.ndarray:
        return self.get_state().astype(np.float32)

    # ---- task ---------------------------------------------------------------------------------------------
    def is_success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        return self.distance(state, goal_state) < SUCCESS_RADIUS

    def distance(self, state: np.ndarray, goal_state: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(state)[:2] - np.asarray(goal_state)[:2]))

    def cell_xy(self, cell) -> np.ndarray:
        return self._maze.maze.cell_rowcol_to_xy(np.asarray(cell))

    def xy_cell(self, xy) -> tuple[int, int]:
        return tuple(int(v) for v in self._maze.maze.cell_xy_to_rowcol(np.asarray(xy)))

    def line_blocked(self, xy_a, xy_b) -> bool:
        """True when the straight segment between two positions crosses a wall block (checked every 0.05)."""
        xy_a, xy_b = np.asarray(xy_a, dtype=np.float64), np.asarray(xy_b, dtype=np.float64)
        points = np.linspace(xy_a, xy_b, max(2, int(np.linalg.norm(xy_b - xy_a) / 0.05) + 1))
        return any(self.grid[self.xy_cell(p)] for p in points)

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        cell = self.free_cells[rng.integers(len(self.free_cells))]
        xy = self.cell_xy(cell) + rng.uniform(-START_JITTER, START_JITTER, 2)
        return np.concatenate([xy, np.zeros(2)])

    def _path(self, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
        """Free cells from start (exclusive) to goal (inclusive), breadth-first over 4-neighbours."""
        parent = {start: None}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if cell == goal:
                break
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nxt = (cell[0] + dr, cell[1] + dc)
                if not self.grid[nxt] and nxt not in parent:
                    parent[nxt] = cell
                    queue.append(nxt)
        path = []
        while goal != start:
            path.append(goal)
            goal = parent[goal]
        return path[::-1]

    def data_action(self, rng: np.random.Generator) -> np.ndarray:
        """Drive along the corridors towards a random free cell with a PD force plus noise, so episodes sweep the
        whole maze rather than jitter inside one cell; in half of the target cells stop at a random point (goals
        are states at rest anywhere in a cell) and rest there for 10-40 steps, so slow motion and rest are seen all
        over the maze, and pass through the others at speed; then draw the next cell among those this episode has
        not visited yet (any cell once all are visited), so dead ends are reached as often as corridors."""
        xy, vel = self.data.qpos.copy(), self.data.qvel.copy()
        self._seen.add(self.xy_cell(xy))
        if self._stop is None:
            unseen = [cell for cell in map(tuple, self.free_cells) if cell not in self._seen]
            target = unseen[rng.integers(len(unseen))] if unseen else tuple(
                self.free_cells[rng.integers(len(self.free_cells))])
            self._route.extend(self._path(self.xy_cell(xy), target) or [target])
            self._stop = self.cell_xy(target) + rng.uniform(-START_JITTER, START_JITTER, 2)
            if rng.uniform() < STOP_SHARE:
                self._route.pop()
        if self._route:
            waypoint = self.cell_xy(self._route[0])
            if np.linalg.norm(waypoint - xy) < 0.35:
                self._route.popleft()
                if not self._route:   # passed through the target cell: draw the next one
                    self._stop = None
            return np.clip(ROUTE_KP * (waypoint - xy) - ROUTE_KD * vel + rng.normal(0.0, 0.4, 2), self.action_low,
                           self.action_high)
        error = self._stop - xy
        if self._dwell is None and np.linalg.norm(error) < 0.1 and np.linalg.norm(vel) < 0.3:
            self._dwell = int(rng.integers(*DWELL_STEPS))
        if self._dwell is not None:
            self._dwell -= 1
            if self._dwell <= 0:
                self._stop, self._dwell = None, None
        return np.clip(STOP_KP * error - STOP_KD * vel + rng.normal(0.0, 0.1, 2), self.action_low, self.action_high)

    def _hold_native(self) -> np.ndarray:
        """A braking force against the velocity (the ball keeps its momentum; zero force would let it coast)."""
        return np.clip(-HOLD_GAIN * self.data.qvel, self.action_low, self.action_high)

    def coverage(self, states: np.ndarray) -> dict[str, float]:
        """cells_visited: share of the free cells holding some state; least_cell_share: the least-visited free
        cell's share of the states over the uniform share 1/F (1 = perfectly even); slow_share: states with speed
        < 0.5 (where the ball can stop within the success radius)."""
        flat = np.asarray(states, dtype=np.float64).reshape(-1, 4)
        rows, cols = np.transpose([self.xy_cell(xy) for xy in flat[:, :2]])
        counts = np.zeros(self.grid.shape)
        np.add.at(counts, (rows, cols), 1)
        free = counts[~self.grid]
        return {"cells_visited": float((free > 0).mean()),
                "least_cell_share": float(free.min() / free.sum() * len(free)),
                "slow_share": float((np.linalg.norm(flat[:, 2:4], axis=-1) < 0.5).mean())}

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._maze.close()
