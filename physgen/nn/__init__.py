"""Building blocks: time embeddings, residual MLPs for vector fields, and summary encoders.

Encoders (each an nn.Module with ``out_features``, ``name``, ``config`` and a class attribute
``x_standardization`` telling :mod:`physgen.inference` how to standardise x):

* :class:`MLPEncoder` ("mlp") for vector observations ("feature" standardisation);
* :class:`CNNEncoder` ("cnn") for 2D/3D fields, optional periodic padding ("global");
* :class:`DeepSetsEncoder` ("deepsets") and :class:`SetTransformerEncoder` ("set_transformer")
  for variable-size point sets with a mask ("none").

``encoder_for(name, x_shape, **options)`` builds one by name with its shape taken from the data ("a+b"
concatenates two, e.g. a learned encoder beside a physics summary); ``build_encoder(name, **config)``
rebuilds a saved one from its ``name`` and ``config`` (:mod:`physgen.nn.registry`).
"""

from __future__ import annotations

from physgen.nn.cnn import CNNEncoder
from physgen.nn.deepsets import DeepSetsEncoder
from physgen.nn.embeddings import SinusoidalEmbedding
from physgen.nn.mlp import MLP, MLPEncoder, ResidualMLP
from physgen.nn.registry import ENCODERS, ConcatEncoder, build_encoder, check_accepts, encoder_for
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
    "encoder_for",
    "check_accepts",
    "ConcatEncoder",
]
