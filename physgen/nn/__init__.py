"""Building blocks: time embeddings, residual MLPs for vector fields, and summary encoders.

Encoders (each an nn.Module with ``out_features``, ``name``, ``config`` and a class attribute
``x_standardization`` telling :mod:`physgen.inference` how to standardise x):

* :class:`MLPEncoder` ("mlp") for vector observations ("feature" standardisation);
* :class:`CNNEncoder` ("cnn") for 2D/3D fields, optional periodic padding ("global");
* :class:`DeepSetsEncoder` ("deepsets") and :class:`SetTransformerEncoder` ("set_transformer")
  for variable-size point sets with a mask ("none").

``build_encoder(name, **config)`` rebuilds an encoder from its ``name`` and ``config``.
"""

from __future__ import annotations

from torch import nn

from physgen.nn.cnn import CNNEncoder
from physgen.nn.deepsets import DeepSetsEncoder
from physgen.nn.embeddings import SinusoidalEmbedding
from physgen.nn.mlp import MLP, MLPEncoder, ResidualMLP
from physgen.nn.set_transformer import SetTransformerEncoder
from physgen.nn.unet import UNet

__all__ = [
    "MLP",
    "ResidualMLP",
    "UNet",
    "SinusoidalEmbedding",
    "MLPEncoder",
    "CNNEncoder",
    "DeepSetsEncoder",
    "SetTransformerEncoder",
    "ENCODERS",
    "build_encoder",
]

ENCODERS: dict[str, type[nn.Module]] = {
    "mlp": MLPEncoder,
    "cnn": CNNEncoder,
    "deepsets": DeepSetsEncoder,
    "set_transformer": SetTransformerEncoder,
}


def build_encoder(name: str, **config) -> nn.Module:
    """Build an encoder from its ``name`` and ``config`` (as stored by save)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**config)
