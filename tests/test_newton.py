"""openhmr.newton: Newton's method over independent rows."""

from __future__ import annotations

import math

import torch

from openhmr.newton import newton_rows


def _quadratics(seed: int, rows: int, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row positive definite A (R, D, D) and minimisers m (R, D)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(rows, dims, dims, generator=g, dtype=torch.float64))[0]
    eig = 10.0 ** (4 * torch.rand(rows, dims, generator=g, dtype=torch.float64))  # stiff: 1…1e4
    a = q @ torch.diag_embed(eig) @ q.transpose(1, 2)
    return a, torch.randn(rows, dims, generator=g, dtype=torch.float64)


def test_a_stiff_quadratic_is_solved_in_one_step() -> None:
    """Curvatures over four orders of magnitude: one Newton step lands on the
    minimum (where L-BFGS would need many), and the Hessian is exact."""
    a, m = _quadratics(0, 5, 6)

    def energy(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        d = x - m[rows]
        return 0.5 * torch.einsum("ri,rij,rj->r", d, a[rows], d)

    x0 = torch.zeros(5, 6, dtype=torch.float64)
    x, f = newton_rows(x0, energy, steps=1)
    assert torch.allclose(x, m, atol=1e-9)
    assert f.abs().max() < 1e-12


def test_energy_never_rises_and_a_curved_valley_is_followed() -> None:
    """Rosenbrock rows (non-convex, indefinite Hessian away from the valley):
    every accepted step lowers the energy and the rows reach the minimum."""
    def energy(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return (1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2

    x0 = torch.tensor([[-1.2, 1.0], [0.5, -0.5], [2.0, 2.0]], dtype=torch.float64)
    previous = energy(x0, torch.arange(3))
    x = x0
    for _ in range(40):
        x, f = newton_rows(x, energy, steps=1)
        assert (f <= previous).all()
        previous = f
    assert torch.allclose(x, torch.ones(3, 2, dtype=torch.float64), atol=1e-4), x


def test_rows_do_not_depend_on_their_companions() -> None:
    def energy(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        scale = (rows + 1).to(x.dtype)
        return (scale[:, None] * (x - 0.3) ** 2).sum(1) + torch.cos(3 * x).sum(1)

    x0 = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    together, _ = newton_rows(x0, energy, steps=6)
    for r in range(4):
        def alone_energy(x: torch.Tensor, rows: torch.Tensor, r: int = r) -> torch.Tensor:
            return energy(x, torch.full_like(rows, r))
        alone, _ = newton_rows(x0[r:r + 1], alone_energy, steps=6)
        assert torch.allclose(alone[0], together[r], atol=1e-12)


def test_a_row_whose_energy_is_not_finite_stays_put() -> None:
    """A trial point with a non-finite energy is rejected, and a row that starts
    at one is left alone."""
    def energy(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        e = ((x - 2.0) ** 2).sum(1)
        return torch.where(x[:, 0] > 1.0, torch.full_like(e, math.inf), e)  # a wall at x₀ = 1

    x0 = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    x, f = newton_rows(x0, energy, steps=5)
    assert x[0, 0] <= 1.0 and f[0] < energy(x0, torch.arange(2))[0]
    assert torch.equal(x[1], x0[1]) and math.isinf(float(f[1]))


def test_a_negative_curvature_is_replaced_by_its_absolute_value() -> None:
    """f(x) = −x² + x⁴/4 at x = ±0.5: f′ = −2x + x³ = ∓0.875 and f″ = −2 + 3x²
    = −1.25 < 0. Saddle-free Newton divides by |f″| = 1.25 (above the damping
    floor 0.5, so the floor plays no part): d = 0.875 / 1.25 = ±0.7, and the
    full step lowers f (−0.234375 → −0.9216), so one step lands exactly on
    ±1.2 (float64, 1e-12). Flooring the signed eigenvalue instead would give
    the floor 0.5 and a different point."""
    def energy(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return (-x ** 2 + x ** 4 / 4).sum(1)

    x0 = torch.tensor([[0.5], [-0.5]], dtype=torch.float64)
    x, f = newton_rows(x0, energy, steps=1, damping=0.5)
    torch.testing.assert_close(x, torch.tensor([[1.2], [-1.2]], dtype=torch.float64),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(f, torch.full((2,), -0.9216, dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_rosenbrock_is_solved_to_high_accuracy_before_stopping() -> None:
    """Rosenbrock from (−1.2, 1) and (2, 2), with a damping (1e-3) below its
    smallest curvature at the minimum (≈ 0.4), so the last steps converge
    quadratically: a row stops only once a step gains less than the default
    tolerance (1e-6 relative), by which time its energy is below 1e-10 and it
    is at (1, 1) to 1e-5. A tolerance far too loose would stop the rows after
    their first steps."""
    def energy(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return (1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2

    x0 = torch.tensor([[-1.2, 1.0], [2.0, 2.0]], dtype=torch.float64)
    x, f = newton_rows(x0, energy, steps=50, damping=1e-3)
    assert f.max() < 1e-10, f
    torch.testing.assert_close(x, torch.ones(2, 2, dtype=torch.float64), rtol=0, atol=1e-5)
