"""HMR's iterative error feedback (IEF) regressor, the ``3D_module`` (HMR_REFERENCE §3).

Starting from a learned mean Θ₀, the same three-layer MLP is applied T times
(T = 3) to the image feature and the current estimate, and its output is
added as a correction:

    Θ_{t+1} = Θ_t + fc3(drop(relu(fc2(drop(relu(fc1([φ, Θ_t])))))))

Θ = [camera (s, tx, ty), pose (3·J axis-angle), shape (k)]; its size is set by
the body model (85 for HMR's SMPL). No component is clamped or squashed.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
import torch.nn.functional as F


class IEFRegressor(nn.Module):
    """The ``3D_module`` MLP iterated from a learned mean ``mean_param``.

    Args:
        mean_theta: (|Θ|,) or (1, |Θ|) initial value of the learned Θ₀.
        feature_dim: size of the image feature φ (2048).
        hidden: width of fc1 and fc2 (1024).
        num_iterations: T, the number of IEF steps (3).
        dropout: drop probability after fc1 and fc2 in training (0.5; slim's
            keep_prob of 0.5).
    """

    def __init__(
        self,
        mean_theta: Tensor,
        feature_dim: int = 2048,
        hidden: int = 1024,
        num_iterations: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        theta_dim = int(mean_theta.numel())
        self.theta_dim = theta_dim
        self.feature_dim = feature_dim
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be at least 1, got {num_iterations}")
        self.num_iterations = num_iterations
        self.fc1 = nn.Linear(feature_dim + theta_dim, hidden)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout(dropout)
        self.fc3 = nn.Linear(hidden, theta_dim)
        # Θ₀ is trainable in the original (Q8) and updated with the encoder.
        self.mean_param = nn.Parameter(mean_theta.detach().reshape(1, theta_dim).clone().float())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """slim defaults for fc1/fc2 (Glorot uniform, zero bias); fc3 starts tiny.

        fc3 uses ``variance_scaling_initializer(factor=0.01, mode='FAN_AVG',
        uniform=True)``: U(±sqrt(3·0.01 / ((fan_in + fan_out)/2))), so the first
        corrections are small and Θ starts near the mean.
        """
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        fan_avg = (self.fc3.in_features + self.fc3.out_features) / 2.0
        limit = math.sqrt(3.0 * 0.01 / fan_avg)
        nn.init.uniform_(self.fc3.weight, -limit, limit)
        nn.init.zeros_(self.fc3.bias)

    def step(self, features: Tensor, theta: Tensor) -> Tensor:
        """One correction Δ (B, |Θ|) from φ (B, F) and the current Θ (B, |Θ|)."""
        return self._correction(self._feature_term(features), theta)

    def _feature_term(self, features: Tensor) -> Tensor:
        """fc1's image part W_φ·φ + b (B, hidden).

        fc1([φ, Θ]) = W_φ·φ + b + W_Θ·Θ, and φ does not change across the
        iterations, so this part (2048 of fc1's 2133 inputs) is computed once
        per image rather than once per iteration.
        """
        w_phi = self.fc1.weight[:, : self.feature_dim]
        return F.linear(features, w_phi, self.fc1.bias)

    def _correction(self, feature_term: Tensor, theta: Tensor) -> Tensor:
        w_theta = self.fc1.weight[:, self.feature_dim:]
        x = self.drop1(F.relu(feature_term + F.linear(theta, w_theta)))
        x = self.drop2(F.relu(self.fc2(x)))
        return self.fc3(x)

    def forward(self, features: Tensor) -> list[Tensor]:
        """Run T IEF steps.

        Args:
            features: (B, F) image features φ.
        Returns:
            T tensors (B, |Θ|): Θ after each iteration (the last is the output).
        """
        theta = self.mean_param.expand(features.shape[0], -1)
        feature_term = self._feature_term(features)
        thetas: list[Tensor] = []
        for _ in range(self.num_iterations):
            theta = theta + self._correction(feature_term, theta)
            thetas.append(theta)
        return thetas
