"""HMR's networks: ResNet-50 encoders, the IEF regressor, the factorised
discriminator and the whole model ``HMR``."""

from openhmr.nets.discriminator import FactorizedDiscriminator
from openhmr.nets.hmr import HMR, HMROutput, MeshEstimate, default_mean_theta, mean_theta_from_params
from openhmr.nets.regressor import IEFRegressor
from openhmr.nets.resnet import ENCODERS, ResNet50V1, ResNet50V2, build_encoder, tf_same_max_pool

__all__ = [
    "ENCODERS", "HMR", "FactorizedDiscriminator", "HMROutput", "IEFRegressor", "MeshEstimate",
    "ResNet50V1", "ResNet50V2", "build_encoder", "default_mean_theta", "mean_theta_from_params", "tf_same_max_pool",
]
