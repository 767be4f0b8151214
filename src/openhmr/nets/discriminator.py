"""HMR's factorised adversarial prior on pose and shape (HMR_REFERENCE §7).

The discriminator sees the local rotation matrices of the J − 1 non-root
joints (23 for SMPL) and the shape parameters, and gives J + 1 logits:

* one per joint, from a small embedding shared by all joints
  (two 1×1 convs 9 → 32 → 32 in the original, i.e. a Linear shared over
  joints) followed by a per-joint linear head 32 → 1;
* one for all joints together: the (J − 1)·32 embeddings, flattened
  joint-major, through 1024 → 1024 → 1;
* one for the shape: k → 10 → 5 → 1.

Output order: [per-joint …, all-joints, shape]. The original squeezes the
stacked per-joint logits over every singleton axis, which breaks at N = 1;
here the output is always (N, J + 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openhmr.errors import WeightsError


class FactorizedDiscriminator(nn.Module):
    """``Discriminator_separable_rotations`` with sizes from the body model.

    Args:
        num_joints: number of rotated non-root joints J − 1 (SMPL: 23).
        num_betas: number of shape parameters k (SMPL in HMR: 10).
        embed: per-joint embedding width (32).
        hidden: width of the all-joints MLP (1024).

    ``forward(rotations (N, J−1, 3, 3), betas (N, k)) -> (N, J+1)`` logits.
    """

    def __init__(self, num_joints: int = 23, num_betas: int = 10, embed: int = 32, hidden: int = 1024) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.num_betas = num_betas
        # D_conv1 / D_conv2: 1×1 convs over a (J−1)×1 "image" = one Linear per joint, shared.
        self.conv1 = nn.Linear(9, embed)
        self.conv2 = nn.Linear(embed, embed)
        # pose_out_j{i}: one linear head per joint.
        self.pose_out = nn.ModuleList(nn.Linear(embed, 1) for _ in range(num_joints))
        self.alljoints_fc1 = nn.Linear(num_joints * embed, hidden)
        self.alljoints_fc2 = nn.Linear(hidden, hidden)
        self.alljoints_out = nn.Linear(hidden, 1)
        self.shape_fc1 = nn.Linear(num_betas, 10)
        self.shape_fc2 = nn.Linear(10, 5)
        self.shape_out = nn.Linear(5, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, rotations: Tensor, betas: Tensor) -> Tensor:
        """Logits for a batch of poses and shapes.

        Args:
            rotations: (N, J−1, 3, 3) local rotation matrices of the non-root
                joints (SMPL joints 1..23), each read row-major.
            betas: (N, k) shape parameters.
        Returns:
            (N, J+1) logits: [joint 1, …, joint J−1, all joints, shape].
        """
        n = rotations.shape[0]
        x = rotations.reshape(n, self.num_joints, 9)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))  # (N, J−1, 32)
        # All per-joint heads at once: row i of the stacked weights is pose_out_j{i}.
        heads = cast(list[nn.Linear], list(self.pose_out))
        head_w = torch.cat([h.weight for h in heads], dim=0)  # (J−1, 32)
        head_b = torch.cat([h.bias for h in heads], dim=0)  # (J−1,)
        joint_logits = (x * head_w).sum(dim=-1) + head_b
        a = F.relu(self.alljoints_fc1(x.reshape(n, -1)))  # joint-major flatten, as D_alljoints_fc1
        a = F.relu(self.alljoints_fc2(a))
        all_logit = self.alljoints_out(a)
        s = F.relu(self.shape_fc1(betas))
        s = F.relu(self.shape_fc2(s))
        shape_logit = self.shape_out(s)
        return torch.cat([joint_logits, all_logit, shape_logit], dim=1)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "FactorizedDiscriminator":
        """Load the ``discriminator.*`` tensors of an openhmr weight file.

        Sizes (joints, betas, the all-joints width) are read from the tensors. Raises WeightsError
        when the file is missing, corrupt or holds no discriminator.
        """
        from openhmr.io.hmr_weights import read_weights

        tensors, _ = read_weights(path)
        prefix = "discriminator."
        state = {k[len(prefix):]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith(prefix)}
        if not state:
            raise WeightsError(f"{Path(path).name} holds no discriminator weights")
        try:
            num_joints = sum(1 for k in state if k.startswith("pose_out.") and k.endswith(".weight"))
            # A trained run may have chosen another width (openhmr train's discriminator_hidden).
            model = cls(num_joints=num_joints, num_betas=int(state["shape_fc1.weight"].shape[1]),
                        hidden=int(state["alljoints_fc1.weight"].shape[0]))
            model.load_state_dict(state, strict=True)
        except (KeyError, RuntimeError) as e:
            raise WeightsError(f"{Path(path).name}: its discriminator weights are incomplete ({e})") from None
        return model.to(map_location)
