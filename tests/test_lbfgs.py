"""The per-row L-BFGS (openhmr.lbfgs): direction, convergence, independence of rows."""

from __future__ import annotations

import torch

from openhmr.lbfgs import _direction, minimise_rows

F64 = torch.float64


def _two_loop(g: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Reference: Nocedal & Wright's Algorithm 7.4 for one row, pairs oldest first."""
    q, alphas = g.clone(), []
    for s, y in reversed(pairs):
        a = (s @ q) / (s @ y)
        alphas.append(a)
        q = q - a * y
    s, y = pairs[-1] if pairs else (None, None)
    r = q * ((s @ y) / (y @ y) if pairs else 1.0)
    for (s, y), a in zip(pairs, reversed(alphas)):
        r = r + s * (a - (y @ r) / (s @ y))
    return -r


def test_compact_direction_equals_the_two_loop_recursion() -> None:
    """Rows with full, partial, gapped and empty histories (float64, 1e-12)."""
    g0 = torch.Generator().manual_seed(0)
    rows, m, dim = 4, 6, 9
    a = torch.randn(dim, dim, generator=g0, dtype=F64)
    hessian = a @ a.T + torch.eye(dim, dtype=F64)
    s = torch.randn(rows, m, dim, generator=g0, dtype=F64)
    y = s @ hessian  # curvature pairs of a convex quadratic: sᵀy > 0
    s[1, :3] = 0  # three pairs
    y[1, :3] = 0
    s[2, 2] = 0  # a slot emptied in the middle
    y[2, 2] = 0
    s[3] = 0  # no pair yet: steepest descent
    y[3] = 0
    g = torch.randn(rows, dim, generator=g0, dtype=F64)
    d = _direction(g, s, y)
    for r in range(rows):
        pairs = [(s[r, i], y[r, i]) for i in range(m) if s[r, i].abs().sum() > 0]
        torch.testing.assert_close(d[r], _two_loop(g[r], pairs), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d[3], -g[3])


def _quadratic_rows(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n random convex quadratics ½xᵀAx − bᵀx of condition number up to ~1e3."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, dim, dim, generator=gen, dtype=F64))
    eig = 10.0 ** (3 * torch.rand(n, dim, generator=gen, dtype=F64))
    return q @ torch.diag_embed(eig) @ q.transpose(1, 2), torch.randn(n, dim, generator=gen,
                                                                         dtype=F64)


def test_convex_quadratics_converge_and_losses_never_rise() -> None:
    a, b = _quadratic_rows(5, 8, 1)
    x = torch.zeros(5, 8, dtype=F64, requires_grad=True)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def loss(rows: torch.Tensor) -> torch.Tensor:
        xr = x[rows]
        f = 0.5 * (xr[:, None] @ a[rows] @ xr[..., None])[:, 0, 0] - (b[rows] * xr).sum(1)
        seen.append((rows.clone(), f.detach().clone()))
        return f

    final = minimise_rows([x], loss, iters=200, max_evals=400, tolerance_change=0.0)
    solution = torch.linalg.solve(a, b[..., None])[..., 0]
    torch.testing.assert_close(x.detach(), solution, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(final, -0.5 * (b * solution).sum(1), rtol=1e-12, atol=1e-12)
    # Each row's accepted values decrease: its best-so-far ends at its final loss
    # and no evaluation that was accepted (the next iteration's start) is higher.
    best = torch.full((5,), float("inf"), dtype=F64)
    for rows, f in seen:
        best[rows] = torch.minimum(best[rows], f)
    torch.testing.assert_close(best, final)


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """(R,) Rosenbrock's valley in each row's 2 variables; minimum 0 at (1, 1)."""
    return (1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2


def test_rows_are_independent_of_their_companions() -> None:
    """A row's result alone equals its result beside other rows (float64, exact
    up to round-off), though the rows need different steps, line searches and
    numbers of evaluations; only rows still searching are evaluated."""
    starts = torch.tensor([[-1.2, 1.0], [2.0, -1.0], [0.5, 3.0], [-3.0, -3.0]], dtype=F64)

    def run(start: torch.Tensor, iters: int = 60) -> tuple[torch.Tensor, list[int]]:
        x = start.clone().requires_grad_(True)
        sizes: list[int] = []

        def loss(rows: torch.Tensor) -> torch.Tensor:
            sizes.append(len(rows))
            return _rosenbrock(x[rows])

        minimise_rows([x], loss, iters)
        return x.detach(), sizes

    together, sizes = run(starts)
    alone = torch.cat([run(starts[i:i + 1])[0] for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    assert min(sizes) < 4  # line-search retries evaluated only the rows that needed them
    more, _ = run(starts, iters=500)
    torch.testing.assert_close(more, torch.ones(4, 2, dtype=F64), rtol=0, atol=1e-6)


def test_a_trial_whose_loss_is_not_finite_is_rejected() -> None:
    """−log barrier: the first full step overshoots into NaN; the row backs off."""
    x = torch.tensor([[0.9], [0.1]], dtype=F64, requires_grad=True)

    def loss(rows: torch.Tensor) -> torch.Tensor:
        xr = x[rows, 0]
        return 10 * xr - torch.log(xr)  # minimum at 0.1, undefined for x ≤ 0

    final = minimise_rows([x], loss, iters=50)
    assert torch.isfinite(final).all()
    torch.testing.assert_close(x.detach(), torch.full((2, 1), 0.1, dtype=F64), rtol=1e-6,
                               atol=1e-9)


def test_stopping_rules() -> None:
    """A row at its minimum is not moved; the iteration budget is per row."""
    x = torch.tensor([[0.0], [5.0]], dtype=F64, requires_grad=True)
    calls: list[torch.Tensor] = []

    def loss(rows: torch.Tensor) -> torch.Tensor:
        calls.append(rows.clone())
        return (x[rows, 0] ** 2).cosh()

    minimise_rows([x], loss, iters=3)
    assert x[0, 0].item() == 0.0  # zero gradient: never evaluated after the first call
    assert all(0 not in c.tolist() for c in calls[1:])
    assert len(calls) <= 3  # a budget of 3 evaluations per row, the first included
    assert abs(x[1, 0].item()) < 5.0


def test_accepted_losses_never_rise_on_rosenbrock_rows() -> None:
    """Armijo's sufficient decrease f(x + t d) ≤ f(x) + c₁ t gᵀd (gᵀd < 0) makes
    every accepted step lower a row's loss. 25 Rosenbrock rows from a grid of
    starts; since a row's path does not depend on its budget, the loss after k
    accepted steps (iters=k) is the k-th accepted loss of one long run, so the
    sequence over k must not rise (exact comparison, float64). c₁ = 0.25: a
    flipped sign in the condition lets rises of up to c₁ t |gᵀd| through, which
    a demanding c₁ makes large enough to happen within the first steps."""
    grid = torch.linspace(-2.0, 2.0, 5, dtype=F64)
    starts = torch.cartesian_prod(grid, grid)
    losses = []
    for k in range(9):
        x = starts.clone().requires_grad_(True)
        losses.append(minimise_rows([x], lambda rows: _rosenbrock(x[rows]), iters=k,
                                    max_evals=100, armijo=0.25, history=5))
        assert torch.equal(losses[-1], _rosenbrock(x.detach()))  # the loss returned is x's
    losses = torch.stack(losses)  # (k, rows)
    assert torch.equal(losses[0], _rosenbrock(starts))
    rises = losses[1:] > losses[:-1]
    assert not rises.any(), rises.nonzero().tolist()  # (step k − 1, row) pairs that rose
    moved = losses[0] > 0  # all but the row that starts at the minimum (1, 1)
    assert (losses[-1][moved] < losses[0][moved]).all() and not losses[:, ~moved].any()


def test_only_pairs_with_positive_curvature_are_stored(monkeypatch) -> None:
    """H stays positive definite only if every stored pair has sᵀy > 0.
    Double wells (x² − 1)² per coordinate plus a coupling, started inside the
    concave region |x| < 1/√3 where the Hessian is negative definite, so the
    first steps have sᵀy < 0 and must be skipped. Every history the direction
    is computed from is inspected (the real direction is still returned): each
    filled slot has sᵀy > 1e-10, the storing threshold; empty slots are exactly
    zero. The rows still end at local minima (gradient below 1e-6)."""
    import openhmr.lbfgs as lbfgs

    real_direction = lbfgs._direction
    checked: list[int] = []

    def inspecting_direction(g, s_hist, y_hist):
        filled = (s_hist != 0).any(-1) | (y_hist != 0).any(-1)
        sy = (s_hist * y_hist).sum(-1)
        assert (sy[filled] > 1e-10).all(), sy[filled].min()
        checked.append(int(filled.sum()))
        return real_direction(g, s_hist, y_hist)

    monkeypatch.setattr(lbfgs, "_direction", inspecting_direction)
    x = torch.tensor([[0.1, 0.3], [-0.2, 0.05], [0.4, -0.45], [0.02, 0.5]], dtype=F64,
                     requires_grad=True)

    def loss(rows: torch.Tensor) -> torch.Tensor:
        xr = x[rows]
        return ((xr ** 2 - 1) ** 2).sum(1) + 0.3 * xr[:, 0] * xr[:, 1]

    minimise_rows([x], loss, iters=50, history=5)
    assert sum(checked) > 0  # some pairs were stored and checked
    xs = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(((xs ** 2 - 1) ** 2).sum() + 0.3 * (xs[:, 0] * xs[:, 1]).sum(),
                                  xs)
    assert grad.abs().max() < 1e-6


def test_a_failed_line_search_with_curvature_pairs_restarts_from_steepest_descent() -> None:
    """Pseudo-Huber rows Σ wᵢ(√(1 + (xᵢ − cᵢ)²) − 1), w ≤ 1, started in their
    flat tails. Their curvature is at most 1, so a steepest-descent trial (step
    length ‖g‖₂/‖g‖₁ ≤ 1) always passes the Armijo test; but the secant
    curvature of the tails is tiny, so the L-BFGS step at t = 1 overshoots far
    past the minimum. With max_backtracks=0 each such trial fails the line
    search outright: a row with curvature pairs must then forget them and go
    on from −g (stopping is only for a failure from steepest descent), so every
    row still reaches its minimum c (to 1e-6)."""
    c = torch.tensor([3.0, -2.0], dtype=F64)
    w = torch.tensor([1.0, 0.3], dtype=F64)
    x = torch.tensor([[-10.0, 10.0], [20.0, 0.0], [0.0, 0.0], [-3.0, -30.0]], dtype=F64,
                     requires_grad=True)

    def loss(rows: torch.Tensor) -> torch.Tensor:
        return (w * (torch.sqrt(1 + (x[rows] - c) ** 2) - 1)).sum(1)

    final = minimise_rows([x], loss, iters=200, max_evals=400, max_backtracks=0, history=5)
    torch.testing.assert_close(x.detach(), c.expand(4, 2), rtol=0, atol=1e-6)
    assert final.max() < 1e-12


def test_no_history_and_no_rows() -> None:
    """history < 1 is a ValueError naming it (it was an IndexError after the
    first step); no rows give no losses (an IndexError)."""
    import pytest

    x = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="history must keep at least 1 curvature pair, got 0"):
        minimise_rows([x], lambda rows: ((x[rows] - 1) ** 2).sum(1), iters=5, history=0)
    none = torch.zeros(0, 2, dtype=F64, requires_grad=True)
    assert minimise_rows([none], lambda rows: (none[rows] ** 2).sum(1), iters=5).shape == (0,)
