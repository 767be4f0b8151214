"""Newton's method over independent rows, for finishing a minimisation.

L-BFGS (``openhmr.lbfgs``) builds its curvature from a few recent steps. On a
stiff energy — a heavily weighted 2D term next to weak priors, so curvatures
that differ by orders of magnitude between directions — it creeps along the
flat directions and stops well short of the minimum. Newton's method uses the
exact curvature instead, and from close to a minimum it converges in a few
steps. Each row r minimises its own f_r(x_r), as in ``openhmr.lbfgs``:

1. the gradient g and Hessian H of every row, exactly, by automatic
   differentiation: each row is copied D times and differentiated twice, so
   the D Hessian–vector products of all rows come from one batched pass;
2. the direction d = −|H|⁻¹ g, with |H| the Hessian whose eigenvalues are
   replaced by their absolute values, floored at ``damping`` — a descent
   direction even where H is not positive definite (saddle-free Newton), and a
   bounded one along directions the energy does not constrain;
3. a backtracking line search from t = 1, halving t until f(x + t d) ≤ f(x);
   a row whose search fails (or whose loss stops falling by more than
   ``tolerance``·(1 + |f|), relative to the energy's size) stops there.

A row's loss therefore never increases, and a row's result does not depend on
the other rows (up to the round-off of batched kernels). The Hessian costs D
batched evaluations' worth of work per step, so this is for small D (tens of
variables) and a handful of steps.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["newton_rows"]


def newton_rows(
    x: Tensor,
    energy: Callable[[Tensor, Tensor], Tensor],
    steps: int,
    *,
    damping: float = 1.0,
    max_halvings: int = 12,
    tolerance: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Minimise each row's energy with Newton steps from ``x``.

    Args:
        x: (R, D) starting points, one row per problem.
        energy: given values (R', D) and the rows they belong to (R',), the
            energies (R',); row r's value must depend on its own variables
            only. It is called with rows repeated (the Hessian's copies).
        steps: at most this many Newton steps per row.
        damping: the floor of |H|'s eigenvalues, in the energy's units per
            squared unit of x.
        max_halvings: line-search halvings before a row stops.
        tolerance: a row stops once a step lowers its energy f by less than
            ``tolerance``·(1 + |f|): relative for a large energy, absolute near 0.
    Returns:
        (R, D) each row's last accepted point and (R,) its energy there.
    """
    rows, dims = x.shape
    every = torch.arange(rows, device=x.device)
    x = x.detach().clone()
    with torch.no_grad():
        f = energy(x, every).detach()
    running = torch.isfinite(f)
    for _ in range(steps):
        if not running.any():
            break
        idx = running.nonzero()[:, 0]
        g, h = _gradient_and_hessian(x[idx], idx, energy)
        w, v = torch.linalg.eigh(h.double())
        w = w.abs().clamp(min=damping)
        d = -(v @ ((v.transpose(1, 2) @ g.double()[..., None]) / w[..., None]))[..., 0]
        d = d.to(x.dtype)
        t = torch.ones(len(idx), 1, dtype=x.dtype, device=x.device)
        f_old = f[idx]
        accepted = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        f_new = f_old.clone()
        with torch.no_grad():
            for _ in range(max_halvings + 1):
                trying = ~accepted
                if not trying.any():
                    break
                sub = trying.nonzero()[:, 0]
                f_try = energy(x[idx[sub]] + t[sub] * d[sub], idx[sub])
                ok = torch.isfinite(f_try) & (f_try <= f_old[sub])
                f_new[sub[ok]] = f_try[ok]
                accepted[sub[ok]] = True
                t[sub[~ok]] *= 0.5
        step_rows = idx[accepted]
        x[step_rows] = x[step_rows] + t[accepted] * d[accepted]
        small = (f_old - f_new) <= tolerance * (1.0 + f_old.abs())
        f[step_rows] = f_new[accepted]
        running[idx[~accepted | small]] = False
    return x, f


def _gradient_and_hessian(x: Tensor, rows: Tensor,
                          energy: Callable[[Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """(R, D) gradients and (R, D, D) symmetric Hessians of rows at x (R, D)."""
    r, dims = x.shape
    copies = x.detach().repeat_interleave(dims, 0).requires_grad_(True)  # row-major: (r, i)
    with torch.enable_grad():
        e = energy(copies, rows.repeat_interleave(dims))
        (g,) = torch.autograd.grad(e.sum(), copies, create_graph=True)
        # Copy (r, i) differentiates its gradient along the unit vector e_i:
        # its gradient row becomes column i of row r's Hessian.
        unit = torch.eye(dims, dtype=x.dtype, device=x.device).repeat(r, 1)
        (hv,) = torch.autograd.grad((g * unit).sum(), copies)
    h = hv.reshape(r, dims, dims).transpose(1, 2)
    return g.detach()[::dims], 0.5 * (h + h.transpose(1, 2))
