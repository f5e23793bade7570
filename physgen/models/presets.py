"""Named presets: a family with other defaults (hyperparameters, network options, training options).

``build_model(preset, ...)`` builds the family with the preset's options under the caller's; a saved model
records the family's name and full config, so a preset is a starting point, not a type.

* ``"flow_matching_fast"``: flow matching set up for sampling speed: a 64-wide residual MLP with FiLM
  conditioning, sampled by the midpoint rule with 5 steps (10 network calls per sample instead of 32),
  trained with batch 512, lr 2e-3 and a cosine schedule over 200 epochs. Its accuracy and speed against
  the default: docs/flow_matching_diffusion.md.
"""

from __future__ import annotations

__all__ = ["PRESETS"]

PRESETS: dict[str, dict] = {
    "flow_matching_fast": {
        "family": "flow_matching",
        "options": {"solver": "midpoint", "steps": 5},
        "network_options": {"hidden_features": 64, "conditioning": "film"},
        "fit_defaults": {
            "ema": 0.999,
            "schedule": "cosine",
            "max_epochs": 200,
            "patience": 200,
            "batch_size": 512,
            "lr": 2e-3,
        },
    },
}
