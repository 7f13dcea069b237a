"""GRASP specifics: stop-gradient, sync bookkeeping, the long-horizon advantage over shooting, warm states."""
import pytest
import torch

import planners
from toy_models import Disk, Linear, ToyModel, reachable


class Ripple(ToyModel):
    """s' = s + 0.3 a + (1.5 / 20) sin(20 s) per coordinate: small ripples with a steep state Jacobian
    1 + 1.5 cos(20 s) whose sign flips, so gradients through a long rollout are noise while each step is easy."""

    def __init__(self):
        super().__init__(2, 2, 1.0)

    def step(self, s, a):
        return s + 0.3 * a + 0.075 * torch.sin(20 * s)


def test_state_input_of_the_model_never_gets_gradients():
    model = Linear()
    start, goal = reachable(model, 6, batch=2)
    planners.make("grasp", iters=30).plan(model, start, goal, 6)
    assert model.state_input_grad and not any(model.state_input_grad)
    planners.make("latco", iters=5).plan(model, start, goal, 6)  # full-gradient collocation does differentiate it
    assert any(model.state_input_grad)


def test_stopgrad_false_adds_the_state_input_path_to_the_state_gradient():
    """The ablation differentiates F's state input, and on a linear model its state step is the exact gradient of
    the full lifted loss: with sigma=0 and no sync the first state update must differ from the stop-gradient one."""
    model = Linear(scale=1.2)
    start, goal = reachable(model, 5, batch=2)
    states = {}
    for stopgrad in (True, False):
        model.state_input_grad.clear()
        plan = planners.make("grasp", iters=1, sigma=0.0, sync="none", stopgrad=stopgrad).plan(model, start, goal, 5)
        assert any(model.state_input_grad) is not stopgrad
        states[stopgrad] = plan.states
    assert states[True] is not None and not torch.allclose(states[True], states[False])


def test_one_batched_predict_call_per_iteration():
    model = Linear()
    start, goal = reachable(model, 7, batch=3)
    planners.make("grasp", iters=12, sync_every=100).plan(model, start, goal, 7)
    assert len(model.state_input_grad) == 1 + 12  # the latent-scale probe, then one call per iteration
    model.state_input_grad.clear()
    planners.make("grasp", iters=12, sync_every=100, relative=False).plan(model, start, goal, 7)
    assert len(model.state_input_grad) == 12


class Scaled(ToyModel):
    """`base` with its latent multiplied by c: F'(s, a) = c F(s / c, a), the same dynamics in other units."""

    def __init__(self, base, c):
        super().__init__(base.latent_dim, base.action_dim, 1.0)
        self.base, self.c = base, c
        self.action_low, self.action_high = base.action_low, base.action_high

    def step(self, s, a):
        return self.c * self.base.step(s / self.c, a)


@pytest.mark.parametrize("sync", ["grad", "cem"])
@pytest.mark.parametrize("c", [10.0, 0.1])
def test_scale_free_default_gives_the_same_plan_for_a_rescaled_latent(c, sync):
    """relative=true: a model whose latent is rescaled by c gets the same actions and c times the states (noise,
    state lr, Adam's eps and the CEM sync's variance all follow the latent scale). With absolute units the plans
    differ, so the test can fail."""
    base = Tanh()
    gen = torch.Generator().manual_seed(2)
    start = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    goal = base.rollout(start, torch.rand(3, 8, 2, generator=gen, dtype=torch.float64) * 2 - 1)[:, -1]
    plans = {}
    for relative in (True, False):
        for model, k in ((base, 1.0), (Scaled(base, c), c)):
            planner = planners.make("grasp", iters=60, sync_every=20, sync=sync, relative=relative)
            plans[relative, k] = planner.plan(model, k * start, k * goal, 8,
                                              generator=torch.Generator().manual_seed(0))
    same, rescaled = plans[True, 1.0], plans[True, c]
    torch.testing.assert_close(rescaled.actions, same.actions, rtol=0, atol=1e-6)
    torch.testing.assert_close(rescaled.states, c * same.states, rtol=1e-6, atol=1e-6 * c)
    torch.testing.assert_close(rescaled.cost, c ** 2 * same.cost, rtol=1e-6, atol=1e-9 * c ** 2)
    assert (plans[False, c].actions - plans[False, 1.0].actions).abs().max() > 1e-2


def test_patience_stops_when_the_incumbent_stalls_and_keeps_the_best_plan():
    model = Linear()
    start, goal = reachable(model, 6, batch=2)
    full = planners.make("grasp", iters=400, sync_every=10).plan(model, start, goal, 6)
    early = planners.make("grasp", iters=400, sync_every=10, patience=2).plan(model, start, goal, 6)
    assert early.iters < 400 and early.iters % 10 == 0 and early.diagnostics["best_cost"].shape == (early.iters, 2)
    torch.testing.assert_close(early.cost, early.diagnostics["best_cost"][-1])
    assert (early.cost < 1e-2 * full.diagnostics["best_cost"][0]).all()  # it stopped after solving, not before


@pytest.mark.parametrize("sync", ["grad", "cem"])
def test_returned_plan_is_the_best_by_true_cost_even_when_sync_hurts(sync):
    """The reference code returns the last iterate; a bad sync (here lr_sync=50) then makes the plan worse."""
    model = Linear()
    start, goal = reachable(model, 6, batch=4)
    plan = planners.make("grasp", iters=100, sync=sync, lr_sync=50.0, sync_every=10).plan(model, start, goal, 6)
    best = plan.diagnostics["best_cost"]
    assert (best[1:] <= best[:-1]).all()
    assert (plan.diagnostics["rollout_cost"][-1] > 2 * plan.cost).any()  # the last iterate is worse: sync hurt
    true = (model.rollout(start, plan.actions)[:, -1] - goal).square().sum(-1)
    torch.testing.assert_close(plan.cost, true)
    torch.testing.assert_close(plan.cost, best[-1])


def test_cem_sync_solves_too():
    model = Linear()
    start, goal = reachable(model, 5, batch=3)
    assert (planners.make("grasp", sync="cem", iters=100).plan(model, start, goal, 5).cost < 0.05).all()


def test_long_horizon_grasp_reaches_goals_where_shooting_gd_fails():
    model, horizon = Ripple(), 40
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(6, 2, generator=gen)
    sign = torch.randint(0, 2, (6, 1, 2), generator=gen) * 2 - 1
    goal = model.rollout(start, sign * (torch.rand(6, horizon, 2, generator=gen) * 0.6 + 0.3))[:, -1]
    grasp = planners.make("grasp").plan(model, start, goal, horizon)
    gd = planners.make("gd", iters=300).plan(model, start, goal, horizon)
    initial = grasp.diagnostics["best_cost"][0]
    assert (grasp.cost < 0.02 * initial).all(), (grasp.cost, initial)  # scale-free default: <= 1.3 % here
    assert (gd.cost > 10 * grasp.cost).float().mean() >= 0.8, (gd.cost, grasp.cost)


def test_plan_carries_virtual_states_and_warm_states_are_used():
    model = Linear()
    start, goal = reachable(model, 6, batch=2)
    plan = planners.make("grasp", iters=60).plan(model, start, goal, 6)
    assert plan.states.shape == (2, 5, 4)
    shifted = planners.Plan(plan.actions, plan.cost, plan.states + 3.0, {}, plan.nonfinite, plan.iters)
    default_line = planners.make("grasp", iters=1, sigma=0.0).plan(model, start, goal, 6, warm_start=plan)
    moved = planners.make("grasp", iters=1, sigma=0.0).plan(model, start, goal, 6, warm_start=shifted)
    gap = default_line.diagnostics["dyn_loss"][0], moved.diagnostics["dyn_loss"][0]
    assert (gap[1] > gap[0]).all()


def test_horizon_one_has_no_virtual_states():
    model = Linear()
    start, goal = reachable(model, 1, batch=2)
    plan = planners.make("grasp", iters=40).plan(model, start, goal, 1)
    assert plan.states.shape == (2, 0, 4) and torch.isfinite(plan.actions).all()


def test_noise_moves_the_states_and_decays_within_each_sync_period():
    model = Linear()
    start, goal = reachable(model, 6, batch=2)
    frozen = dict(iters=5, lr_states=0.0, lr_actions=0.0, sync="none")
    quiet = planners.make("grasp", sigma=0.0, **frozen).plan(model, start, goal, 6).diagnostics["dyn_loss"]
    noisy = planners.make("grasp", sigma=0.5, **frozen).plan(model, start, goal, 6).diagnostics["dyn_loss"]
    assert (quiet == quiet[0]).all() and not torch.equal(noisy[1], noisy[0])



def test_noise_scale_decays_linearly_within_each_sync_period(monkeypatch):
    """Every iteration's noise scale, read off the states: with frozen learning rates and unit noise the states
    move by exactly that iteration's sigma."""
    model = Linear()
    start, goal = reachable(model, 6, batch=2)
    seen = []

    def unit_noise(generator, shape, like):
        seen.append(like.clone())  # the states before this iteration's noise
        return torch.ones(shape, dtype=like.dtype)

    monkeypatch.setattr(planners.grasp, "normal", unit_noise)
    planners.make("grasp", iters=11, sync_every=5, sigma=1.0, sigma_end=0.0, sync="none", lr_states=0.0,
                  lr_actions=0.0, relative=False).plan(model, start, goal, 6)
    steps = torch.stack([(b - a).mean() for a, b in zip(seen, seen[1:])])
    torch.testing.assert_close(steps, torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2] * 2))


class Tanh(ToyModel):
    """A small NONLINEAR model in float64: s' = s + tanh(W s + V a + b), whose state Jacobian depends on s and a."""

    def __init__(self):
        super().__init__(3, 2, 5.0)
        gen = torch.Generator().manual_seed(3)
        self.W = torch.randn(3, 3, generator=gen, dtype=torch.float64)
        self.V = torch.randn(3, 2, generator=gen, dtype=torch.float64)
        self.b = torch.randn(3, generator=gen, dtype=torch.float64)
        self.action_low, self.action_high = self.action_low.double(), self.action_high.double()

    def step(self, s, a):
        return s + torch.tanh(s @ self.W.T + a @ self.V.T + self.b)


@pytest.mark.parametrize("stopgrad", [True, False])
def test_closed_form_state_gradient_equals_autograd_on_a_nonlinear_model(stopgrad):
    """GRASP writes dL/ds in closed form; autograd of the lifted loss L (with F's state input detached when
    stopgrad, else not) must agree on both code paths, and so must dL/da."""
    model, gamma = Tanh(), 0.7
    B, H, D, A = 2, 5, 3, 2
    gen = torch.Generator().manual_seed(0)
    chain = torch.randn(B, H + 1, D, generator=gen, dtype=torch.float64)  # s_0, s_1..s_{H-1}, g
    actions = torch.randn(B, H, A, generator=gen, dtype=torch.float64)
    grad_states, grad_actions = torch.empty(B, H - 1, D, dtype=torch.float64), torch.empty_like(actions)
    planner = planners.make("grasp", stopgrad=stopgrad, gamma=gamma)
    dyn, goal_loss = planner._lifted_grad(model, chain, actions, grad_states, grad_actions, gamma)

    states, acts = chain[:, 1:-1].clone().requires_grad_(), actions.clone().requires_grad_()
    full = torch.cat((chain[:, :1], states, chain[:, -1:]), 1)
    inputs = full[:, :-1].detach() if stopgrad else full[:, :-1]
    pred = model.step(inputs.reshape(B * H, D), acts.reshape(B * H, A)).view(B, H, D)
    ref_dyn = (pred - full[:, 1:]).square().sum((1, 2))
    ref_goal = (pred - chain[:, -1:]).square().sum((1, 2))
    ref_gs, ref_ga = torch.autograd.grad((ref_dyn + gamma * ref_goal).sum(), (states, acts))
    torch.testing.assert_close(grad_states, ref_gs, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_actions, ref_ga, rtol=0, atol=1e-6)
    torch.testing.assert_close(dyn, ref_dyn.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(goal_loss, ref_goal.detach(), rtol=0, atol=1e-6)
    assert model.state_input_grad == [not stopgrad]
    if not stopgrad:  # the state-input path is really there: the two paths differ on this model
        other = torch.empty_like(grad_states)
        planners.make("grasp", gamma=gamma)._lifted_grad(model, chain, actions, other, grad_actions.clone(), gamma)
        assert (other - grad_states).abs().max() > 1e-3


def test_cuda_graphs_option_is_the_eager_path_on_cpu():
    model = Linear()
    start, goal = reachable(model, 6, batch=2)
    eager = planners.make("grasp", iters=30, sync_every=10, cuda_graphs=False).plan(model, start, goal, 6)
    graphs = planners.make("grasp", iters=30, sync_every=10, cuda_graphs=True).plan(model, start, goal, 6)
    assert torch.equal(eager.actions, graphs.actions) and torch.equal(eager.states, graphs.states)


class ReplayedCall:
    """A stand-in for a captured CUDA graph on CPU: capturing leaves the outputs unwritten (NaN here), and each
    replay runs the function again and writes its results into those same output tensors."""

    def __init__(self, fn, outputs):
        self.fn, self.outputs = fn, outputs

    def replay(self):
        for static, new in zip(self.outputs, self.fn()):
            static.copy_(new)


def emulated_capture(fn, state, warmups):
    saved = [t.clone() for t in state]
    for _ in range(warmups + 1):  # the warm-ups, and a run standing in for the capture's recording
        outputs = fn()
    for live, copy in zip(state, saved):
        live.copy_(copy)
    graph = ReplayedCall(fn, tuple(torch.full_like(o, float("nan")) for o in outputs))
    return graph, graph.outputs


@pytest.mark.parametrize("horizon", [1, 8])  # 1: no virtual states, zero-size buffers
@pytest.mark.parametrize("overrides", [{}, {"sigma": 0.0, "sync": "cem"}, {"patience": 1, "sync_every": 10}])
def test_graph_path_bookkeeping_gives_the_eager_plan_on_cpu(monkeypatch, overrides, horizon):
    """The CUDA-graph path's buffers, warm-up undo, static outputs and per-shape cache, run on CPU with replays
    emulated (CI has no GPU): the eager plans, solve after solve (captured, replayed on another problem, warm)."""
    from planners import cuda_graphs
    monkeypatch.setattr(cuda_graphs, "capture", emulated_capture)
    monkeypatch.setattr(planners.Grasp, "_graphs", lambda self, model, start, horizon, iters:
                        cuda_graphs.solve_graphs(self, model, start, horizon) if self.cfg.cuda_graphs else None)
    model = Disk()
    problems = [reachable(model, horizon, batch=3, seed=seed) for seed in (0, 1)]
    eager = planners.make("grasp", iters=50, iters_warm=20, cuda_graphs=False, **overrides)
    graphed = planners.make("grasp", iters=50, iters_warm=20, **overrides)
    previous = (None, None)
    for i, (start, goal) in enumerate(problems + [problems[1]]):
        plans = [planner.plan(model, start, goal, horizon, warm_start=previous[k] if i == 2 else None,
                              generator=torch.Generator().manual_seed(i))
                 for k, planner in enumerate((eager, graphed))]
        previous = plans
        assert plans[1].iters == plans[0].iters
        torch.testing.assert_close(plans[1].actions, plans[0].actions, rtol=0, atol=1e-5)
        torch.testing.assert_close(plans[1].cost, plans[0].cost, rtol=1e-4, atol=1e-6)
        for name, rows in plans[0].diagnostics.items():
            torch.testing.assert_close(plans[1].diagnostics[name], rows, rtol=1e-4, atol=1e-6)
    (only,) = graphed.solve_graphs.values()
    assert only.iteration_graph is not None and (only.sync_graph is not None) == (graphed.cfg.sync == "grad")


def test_graph_cache_is_per_model_weights_and_shape_and_keeps_the_recently_used():
    from planners.cuda_graphs import MAX_SHAPES, solve_graphs
    from worldmodels import JEPA, ModelConfig
    model = JEPA(ModelConfig("state", (4,), action_dim=2, latent_dim=3, hidden=8, action_embed=4,
                             predictor_hidden=8))
    planner, other = planners.make("grasp"), Linear()
    start = torch.zeros(2, model.latent_dim)
    first = solve_graphs(planner, model, start, 5)
    assert solve_graphs(planner, model, start.clone(), 5) is first
    assert solve_graphs(planner, other, torch.zeros(2, other.latent_dim), 5) is not first
    assert solve_graphs(planner, model, torch.zeros(3, model.latent_dim), 5) is not first
    for horizon in range(6, 6 + MAX_SHAPES - 3):  # fills the cache; then the first is used again, so it stays
        solve_graphs(planner, model, start, horizon)
    assert len(planner.solve_graphs) == MAX_SHAPES and solve_graphs(planner, model, start, 5) is first
    linear = next(key for key in planner.solve_graphs if key[0] == id(other))
    solve_graphs(planner, model, start, 100)  # one more shape: the least recently used (the Linear model's) goes
    assert linear not in planner.solve_graphs and len(planner.solve_graphs) == MAX_SHAPES
    assert solve_graphs(planner, model, start, 5) is first
    model.predictor[0].weight = torch.nn.Parameter(model.predictor[0].weight.clone())  # replaced, not updated
    assert solve_graphs(planner, model, start, 5) is not first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("sigma, horizon", [(0.0, 20), (0.2, 20), (0.2, 1)])
def test_cuda_graph_path_gives_the_eager_plan(sigma, horizon):
    """The iteration and the sync replayed as CUDA graphs equal the eager path up to float rounding (Adam's bias
    corrections are tensor factors there; the noise comes from the same generator stream): on a shape's first solve
    (captured), on another problem of that shape and on a warm start (replayed from the planner's cache)."""
    import worldmodels
    from pathlib import Path
    checkpoint = Path(__file__).resolve().parents[2] / "worldmodels/pretrained/wall.pt"
    model = worldmodels.load_checkpoint(checkpoint)[0].cuda().eval().requires_grad_(False)
    gen = torch.Generator(device="cuda").manual_seed(1)
    eager = planners.make("grasp", iters=60, iters_warm=30, sigma=sigma, cuda_graphs=False)
    graphed = planners.make("grasp", iters=60, iters_warm=30, sigma=sigma)
    problems = [[torch.randn(4, model.latent_dim, device="cuda", generator=gen) for _ in range(2)] for _ in range(2)]
    previous = (None, None)
    for i, (start, goal) in enumerate(problems + [problems[1]]):  # the third solve: warm from the second's plans
        plans = [planner.plan(model, start, goal, horizon, warm_start=previous[k] if i == 2 else None,
                              generator=torch.Generator("cuda").manual_seed(i))
                 for k, planner in enumerate((eager, graphed))]
        previous = plans
        assert plans[1].iters == (30 if i == 2 else 60)
        torch.testing.assert_close(plans[1].actions, plans[0].actions, rtol=0, atol=1e-3)
        for got, want in [(plans[1].cost, plans[0].cost)] + [(plans[1].diagnostics[name], plans[0].diagnostics[name])
                                                             for name in ("dyn_loss", "rollout_cost", "best_cost")]:
            torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-3)  # rounding drifts ~1e-3 relative in 60 iters
    assert len(graphed.solve_graphs) == 1 and not eager.solve_graphs


def test_graphable_adam_step_matches_the_eager_step():
    """The CUDA-graph path's Adam reads its bias corrections from a tensor; checked here on CPU against `step`."""
    from planners.base import Adam
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, generator=gen)
    lr = torch.full_like(x, 0.1)
    lr[25:] = 0.03
    eager, graphable = Adam(x.clone(), lr), Adam(x.clone(), lr)
    corrections = torch.zeros(2)
    for step in range(12):
        grad = torch.randn(50, generator=gen)
        eager.step(grad)
        corrections.copy_(torch.tensor(graphable.corrections()))
        graphable.step_graphable(grad, corrections)
        if step == 5:
            eager.reset(), graphable.reset()
    torch.testing.assert_close(graphable.params, eager.params, rtol=0, atol=1e-6)
    assert graphable.t == eager.t
