"""Adam exactly as TensorFlow 1's ``tf.train.AdamOptimizer`` computes it.

TF folds the bias corrections into the step size and adds ε to √v itself:

    m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
    θ ← θ − lr·√(1 − β2ᵗ)/(1 − β1ᵗ) · m / (√v + ε)

``torch.optim.Adam`` adds ε to the bias-corrected √v̂ = √v/√(1 − β2ᵗ), which
equals the above with ε replaced by ε·√(1 − β2ᵗ), a factor that changes every
step, so no constant ``eps`` makes the two agree. At HMR's ε = 1e-8 the
difference only shows for parameters whose gradients are ~1e-8 or smaller,
but it is cheap to be exact, so openhmr uses this class by default
(``TrainConfig.tf_adam``). Weight decay is deliberately absent (quirk Q1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class TFAdam(torch.optim.Optimizer):
    """Adam with TensorFlow 1's ε placement; no weight decay.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (HMR: 1e-5 for the encoder, 1e-4 for the discriminator).
        betas: (β1, β2), TF's defaults (0.9, 0.999).
        eps: ε added to √v (TF's default 1e-8).
        weight_decay: coupled L2 (g ← g + λ·θ), what an L2 regulariser in the
            loss gives; 0 by default, as HMR was trained (Q1). Never decoupled.

    State: ``exp_avg`` and ``exp_avg_sq`` per parameter, and one step count
    per parameter group (``group["step"]``): TF keeps a single β-power per
    optimiser, so every parameter is corrected with the same t even if it
    missed a step.
    """

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid Adam hyper-parameters lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, step=0))

    # One signature for torch's two overloads (no closure → None; a closure → its loss).
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params, grads, exp_avgs, exp_avg_sqs = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("TFAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
            if not params:
                continue
            if group["weight_decay"]:
                grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
            group["step"] += 1
            t = float(group["step"])
            step_size = group["lr"] * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)
        return loss
