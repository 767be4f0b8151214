"""L-BFGS over independent rows: one optimiser per person, run as one batch.

``torch.optim.LBFGS`` minimises one scalar. A batch of people fitted by
minimising the sum of their losses shares one line search and one curvature
history, so each person's result depends on who else is in the batch (a step
that suits the sum may be too long for one person and too short for another).
Here every row r of the parameters is its own problem, min_x f_r(x_r): the
rows share only the evaluations, which run batched.

Per row and per iteration (Nocedal & Wright, Algorithms 7.4 and 3.1):

1. direction d = −H g, H the L-BFGS inverse Hessian of the row's last m
   curvature pairs (s, y) with H₀ = (sᵀy / yᵀy)·I from the newest pair
   (steepest descent with a step ≤ 1/‖g‖₁ while a row has no pair);
2. backtracking line search from t = 1 until the Armijo condition
   f(x + t d) ≤ f(x) + c₁ t gᵀd holds, each retry at the minimiser of the
   quadratic through f(x), gᵀd and the rejected value (kept within
   [0.1 t, 0.5 t]); a non-finite value or gradient counts as rejected;
3. the pair (s, y) is stored when sᵀy > 10⁻¹⁰ (so H stays positive
   definite; torch.optim.LBFGS's bound). The bound is absolute, as is the
   first step's ≤ 1/‖g‖₁: like torch's, the optimiser is not invariant to
   the loss's scale, and a loss ~10⁻⁴ or smaller creeps by steepest descent
   (the fit's energies, 10–10⁴, never came near: their least sᵀy was 4·10⁻⁵).

The rows run out of step: every batched evaluation is, for each running
row, its next trial point — the first of a new iteration for a row whose
last trial was accepted, a retry for one whose trial was rejected. So a
retry costs no row an extra evaluation, and the batch needs only as many
evaluations as its busiest row.

A row whose line search fails restarts from steepest descent; a row that
fails from steepest descent, or whose gradient or step becomes negligible,
stops. Every row's loss therefore never increases, and a row's path is the
same alone as in any batch (up to the round-off of batched kernels).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["minimise_rows"]


def minimise_rows(
    params: list[Tensor],
    loss_rows: Callable[[Tensor], Tensor],
    iters: int,
    *,
    max_evals: int | None = None,
    history: int = 20,
    armijo: float = 1e-4,
    max_backtracks: int = 10,
    tolerance_grad: float = 1e-9,
    tolerance_change: float = 1e-12,
) -> Tensor:
    """Minimise each row's loss with its own L-BFGS, in place.

    Args:
        params: leaf tensors with ``requires_grad``, each (R, ...): row r of
            every tensor holds problem r's variables.
        loss_rows: given row indices (R',), the losses (R',) of those rows
            at the current ``params``; row r's loss must depend on row r of
            the parameters only. Only running rows are evaluated.
        iters: at most this many iterations (accepted steps) per row.
        max_evals: at most this many evaluations per row, the first and
            line-search retries included (default ``iters``, so a batch runs
            at most ``iters`` evaluations).
        history: m, curvature pairs kept per row.
        armijo: c₁ of the sufficient-decrease condition.
        max_backtracks: line-search retries per iteration before the row
            restarts from steepest descent.
        tolerance_grad: a row stops when max |g| falls to this.
        tolerance_change: a row stops when its step's max |t d| or its loss
            change falls to this.
    Returns:
        (R,) each row's final loss (the parameters hold its minimiser).
    """
    rows = params[0].shape[0]
    if any(p.shape[0] != rows for p in params):
        raise ValueError("every parameter tensor must have the same number of rows")
    if history < 1:
        raise ValueError(f"history must keep at least 1 curvature pair, got {history}")
    if rows == 0:
        return params[0].new_zeros(0)
    sizes = [p[0].numel() for p in params]
    budget = max_evals if max_evals is not None else iters
    every = torch.arange(rows, device=params[0].device)
    if iters <= 0 or budget <= 0:
        with torch.no_grad():
            return loss_rows(every).detach()

    def evaluate(x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Loss (R',) and gradient (R', D) of rows ``idx`` at their values x (R', D)."""
        whole = len(idx) == rows
        for p, part in zip(params, x.split(sizes, 1)):
            if whole:
                p.data.copy_(part.reshape(p.shape))
            else:
                p.data[idx] = part.reshape((-1,) + p.shape[1:])
            p.grad = None
        with torch.enable_grad():
            f = loss_rows(idx)
            f.sum().backward()
        g = torch.cat([(p.grad[idx] if p.grad is not None else torch.zeros_like(p[idx]))
                       .reshape(len(idx), -1) for p in params], 1)
        return f.detach(), g

    x = torch.cat([p.detach().reshape(rows, -1) for p in params], 1)
    f, g = evaluate(x, every)
    s_hist = x.new_zeros(rows, history, x.shape[1])
    y_hist = torch.zeros_like(s_hist)
    pairs = torch.zeros(rows, dtype=torch.long, device=x.device)  # stored pairs per row
    evals = torch.ones_like(pairs)
    steps = torch.zeros_like(pairs)  # accepted steps per row
    retries = torch.zeros_like(pairs)  # rejected trials in the current line search
    running = torch.isfinite(f) & torch.isfinite(g).all(1) & (g.abs().amax(1) > tolerance_grad)
    d = -g
    t = (1.0 / g.abs().sum(1)).clamp(max=1.0)
    slope = (g * d).sum(1)

    while True:
        running &= (evals < budget) & (steps < iters)
        if not running.any():
            break
        idx = every if bool(running.all()) else running.nonzero()[:, 0]
        x_try = x[idx] + t[idx, None] * d[idx]
        f_try, g_try = evaluate(x_try, idx)
        evals[idx] += 1
        ok = torch.isfinite(f_try) & torch.isfinite(g_try).all(1)
        ok &= f_try <= f[idx] + armijo * t[idx] * slope[idx]
        accepted = torch.zeros_like(running)
        accepted[idx] = ok
        rejected = running & ~accepted

        # Rejected: retry at the minimiser of the quadratic through f(x),
        # f'(x; d) and the rejected value, within [0.1 t, 0.5 t].
        if rejected.any():
            f_rej = torch.zeros_like(f)
            f_rej[idx] = f_try
            curvature = f_rej - f - slope * t
            t_quad = -slope * t * t / (2 * curvature)
            t_quad = torch.where(torch.isfinite(t_quad), t_quad, 0.5 * t)
            t = torch.where(rejected, torch.minimum(torch.maximum(t_quad, 0.1 * t), 0.5 * t), t)
            retries = retries + rejected
            failed = rejected & (retries > max_backtracks)
            if failed.any():
                # From steepest descent, failing means a minimum (to precision);
                # otherwise the curvature pairs misled: forget them.
                running &= ~(failed & (pairs == 0))
                keep = ~failed
                s_hist, y_hist = s_hist * keep[:, None, None], y_hist * keep[:, None, None]
                pairs = pairs * keep
                d = torch.where(keep[:, None], d, -g)
                slope = torch.where(keep, slope, -(g * g).sum(1))
                t = torch.where(keep, t, (1.0 / g.abs().sum(1)).clamp(max=1.0))
                retries = retries * keep
        if not accepted.any():
            continue

        # Accepted: store the curvature pair, move, and set up the next step.
        x_new, f_new, g_new = x.clone(), f.clone(), g.clone()
        x_new[idx[ok]], f_new[idx[ok]], g_new[idx[ok]] = x_try[ok], f_try[ok], g_try[ok]
        s, y = x_new - x, g_new - g
        store = accepted & ((s * y).sum(1) > 1e-10)
        if store.any():  # newest pair last, the oldest dropped
            rolled_s = torch.cat([s_hist[:, 1:], s[:, None]], 1)
            rolled_y = torch.cat([y_hist[:, 1:], y[:, None]], 1)
            s_hist = torch.where(store[:, None, None], rolled_s, s_hist)
            y_hist = torch.where(store[:, None, None], rolled_y, y_hist)
            pairs = pairs + store
        small = (s.abs().amax(1) <= tolerance_change) | ((f - f_new).abs() <= tolerance_change)
        running &= ~(accepted & (small | (g_new.abs().amax(1) <= tolerance_grad)))
        x, f, g = x_new, f_new, g_new
        steps = steps + accepted
        retries = retries * ~accepted

        d_next = _direction(g, s_hist, y_hist) if bool(pairs.any()) else -g
        slope_next = (g * d_next).sum(1)
        descent = slope_next < 0
        if not descent.all():  # lost curvature information: start again from −g
            forget = accepted & ~descent
            s_hist, y_hist = s_hist * ~forget[:, None, None], y_hist * ~forget[:, None, None]
            pairs = pairs * ~forget
            d_next = torch.where(descent[:, None], d_next, -g)
            slope_next = (g * d_next).sum(1)
        t_next = torch.where(pairs == 0, (1.0 / g.abs().sum(1)).clamp(max=1.0),
                             torch.ones_like(t))
        d = torch.where(accepted[:, None], d_next, d)
        slope = torch.where(accepted, slope_next, slope)
        t = torch.where(accepted, t_next, t)

    for p, part in zip(params, x.split(sizes, 1)):  # every row at its last accepted point
        p.data.copy_(part.reshape(p.shape))
    return f


def _direction(g: Tensor, s_hist: Tensor, y_hist: Tensor) -> Tensor:
    """d = −H g with the L-BFGS inverse Hessian H of each row, in the compact
    form of Byrd, Nocedal & Schnabel (1994, eq. 3.1) — the two-loop
    recursion's result in a few batched products instead of 4m small steps:

        H = γI + [S  γY] W [Sᵀ; γYᵀ],
        W = [[R⁻ᵀ(D + γYᵀY)R⁻¹, −R⁻ᵀ], [−R⁻¹, 0]],

    with R the upper triangle of SᵀY, D its diagonal and γ = sᵀy / yᵀy of the
    newest pair (1 without one). An empty slot (s = y = 0) gets a unit
    diagonal in R, which makes it inert.

    Args:
        g: (R, D) gradients; s_hist, y_hist: (R, m, D) pairs, oldest first,
            zero where empty.
    Returns:
        (R, D) the search direction.
    """
    sy = s_hist @ y_hist.transpose(1, 2)  # (R, m, m): s_iᵀ y_j
    diag = sy.diagonal(dim1=1, dim2=2)
    empty = diag == 0
    r_up = sy.triu() + torch.diag_embed(empty.to(g.dtype))
    y_last, s_last = y_hist[:, -1], s_hist[:, -1]
    yy_last = (y_last * y_last).sum(1)
    gamma = torch.where(empty[:, -1], torch.ones_like(yy_last),
                        (s_last * y_last).sum(1) / yy_last.clamp(min=torch.finfo(g.dtype).tiny))
    a = (s_hist @ g[..., None])  # (R, m, 1)
    b = gamma[:, None, None] * (y_hist @ g[..., None])
    c = torch.linalg.solve_triangular(r_up, a, upper=True)
    yty = y_hist @ y_hist.transpose(1, 2)
    inner = diag[..., None] * c + gamma[:, None, None] * (yty @ c) - b
    top = torch.linalg.solve_triangular(r_up.transpose(1, 2), inner, upper=False)
    hg = (gamma[:, None] * g + (s_hist.transpose(1, 2) @ top)[..., 0]
          - gamma[:, None] * (y_hist.transpose(1, 2) @ c)[..., 0])
    return -hg
