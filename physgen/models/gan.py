r"""Conditional DCGAN (CosmoGAN style; Mustafa et al. 2019) for periodic fields: a baseline emulator.

A generator G(z, c) maps a latent vector z ~ N(0, I_Z) and the context c (θ, standardised) to a field through
periodic transposed convolutions; a critic D(x, c) scores fields with a projection head
(Miyato & Koyama 2018): ``D(x, c) = w · φ(x) + A(c) · φ(x)``, φ the spatially summed features of a periodic
convolution trunk (spectrally normalised), so D is invariant to periodic shifts. Non-saturating losses

    L_D = softplus(-D(x, c)) + softplus(D(G(z, c), c)),     L_G = softplus(-D(G(z, c), c)).

Training (two optimizers, Adam β = (0.5, 0.999), named "generator" and "discriminator"):

* :meth:`GAN.training_step` alternates one critic step and one generator step per batch; :func:`physgen.fit`
  uses it when it trains this module itself (``fit(gan, (x, c), optimizer=gan_optimizers())``);
* :meth:`GAN.loss` returns L_D + L_G, where the critic term sees the fakes detached and the generator term
  runs the critic with detached weights, so one backward pass gives each optimizer the gradient of its own
  loss (simultaneous updates). This is how ``fit_emulator(data, model="gan")`` trains it: the estimator
  calls the model's ``loss``; ``fit_defaults`` builds the two optimizers.

Validation. In eval mode ``loss`` is the energy score of two generated fields per data row on the field
and its log power spectrum (:func:`physgen.models._dcgan.energy_score`, a proper scoring rule), so early
stopping and the best epoch follow sample quality, not the adversarial losses.

Divergence. A non-finite loss restores the weights of the best validated epoch and raises
:class:`physgen.train.TrainingError` naming what to change; a critic that wins outright (L_G above
``divergence_loss`` for ``divergence_steps`` consecutive steps) makes the ``fit_defaults`` callback stop
training with a warning, and fit returns the best epoch's weights. There is no ``log_prob``: a GAN has no
density.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physgen.models._dcgan import ConvCritic, ConvDecoder, energy_score, field_shape

__all__ = ["GAN", "gan_optimizers", "stop_on_divergence"]


def _gan_in(module: nn.Module) -> GAN:
    for m in module.modules():
        if isinstance(m, GAN):
            return m
    raise TypeError(f"{type(module).__name__} holds no GAN; these optimizers and callbacks are for GAN emulators")


def gan_optimizers() -> dict:
    """fit's ``optimizer``: ``{"generator": ..., "discriminator": ...}`` factories for a module holding a GAN.
    The generator's optimizer also takes every parameter outside the GAN (e.g. a trainable θ encoder)."""

    def generator(module: nn.Module) -> torch.optim.Optimizer:
        gan = _gan_in(module)
        critic = {id(p) for p in gan.critic_parameters()}
        params = [p for p in module.parameters() if id(p) not in critic]
        beta1, beta2 = gan.config["betas"]
        return torch.optim.Adam(params, lr=gan.config["lr_generator"], betas=(beta1, beta2))

    def discriminator(module: nn.Module) -> torch.optim.Optimizer:
        gan = _gan_in(module)
        beta1, beta2 = gan.config["betas"]
        return torch.optim.Adam(gan.critic_parameters(), lr=gan.config["lr_discriminator"], betas=(beta1, beta2))

    return {"generator": generator, "discriminator": discriminator}


def stop_on_divergence(epoch: int, module: nn.Module, result) -> bool:
    """fit callback: stop (with a warning naming what to change) once the GAN has flagged a divergence."""
    gan = _gan_in(module)
    if gan.divergence is None:
        return False
    warnings.warn(
        f"{gan.divergence}; training stopped at epoch {epoch}, the weights of the best epoch "
        f"({result.best_epoch}, validation energy score {result.best_val_loss:.4g}) are kept. To train further, "
        "lower lr_discriminator or raise lr_generator (model_options), or use fewer critic channels",
        RuntimeWarning,
        stacklevel=2,
    )
    return True


class _GANConfig(TypedDict):
    """``GAN.config``: the constructor's arguments, JSON-serialisable (``GAN(**config)`` rebuilds it)."""

    event_shape: list[int]
    context_dim: int
    latent_dim: int
    channels: list[int]
    embedding: int
    lr_generator: float
    lr_discriminator: float
    betas: list[float]
    spectral_norm: bool
    divergence_loss: float
    divergence_steps: int


class GAN(nn.Module):
    """Conditional DCGAN for fields ``(H, W)`` / ``(C, H, W)`` (module docstring).

    Args:
        event_shape: the field's shape; H and W multiples of 2^len(channels).
        context_dim: C (0 = unconditional).
        latent_dim: Z.
        channels: generator channels from the coarsest level up (the critic uses them reversed).
        embedding: size of the context embedding (generator FiLM, critic projection).
        lr_generator, lr_discriminator, betas: Adam settings of the two optimizers.
        spectral_norm: spectrally normalise the critic's convolutions.
        divergence_loss, divergence_steps: the generator loss that, held for that many consecutive training
            steps, flags a divergence (the critic wins outright).
    """

    fit_defaults = {
        "optimizer": gan_optimizers(),
        "callbacks": (stop_on_divergence,),
        "schedule": None,
        "batch_size": 64,
        "max_epochs": 300,
        "patience": 40,
        "clip_norm": 10.0,
    }
    sample_block = 4096

    def __init__(
        self,
        event_shape: tuple[int, ...],
        context_dim: int,
        *,
        latent_dim: int = 64,
        channels: tuple[int, ...] = (128, 64, 32),
        embedding: int = 64,
        lr_generator: float = 2e-4,
        lr_discriminator: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        spectral_norm: bool = True,
        divergence_loss: float = 15.0,
        divergence_steps: int = 200,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        chw = field_shape(event_shape, len(channels), "gan")
        for name, v in (
            ("lr_generator", lr_generator),
            ("lr_discriminator", lr_discriminator),
            ("divergence_loss", divergence_loss),
        ):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"GAN needs a finite positive {name}; got {v}")
        if len(betas) != 2:
            raise ValueError(f"GAN needs betas = (beta1, beta2), Adam's two decay rates; got {betas!r}")
        if latent_dim < 1 or embedding < 1 or divergence_steps < 1 or context_dim < 0 or min(channels) < 1:
            raise ValueError("GAN needs latent_dim, embedding, divergence_steps and channels >= 1 and context_dim >= 0")
        self.name = "gan"
        self.event_shape, self.context_dim, self._chw = tuple(int(s) for s in event_shape), int(context_dim), chw
        self.latent_dim = int(latent_dim)
        self.generator = ConvDecoder(chw, latent_dim, context_dim, channels, embedding)
        self.critic = ConvCritic(chw[0], channels[::-1], spectral_norm=spectral_norm)
        self.head = nn.Linear(channels[0], 1)
        self.project = nn.Linear(context_dim, channels[0], bias=False) if context_dim > 0 else None
        self.config: _GANConfig = {
            "event_shape": list(self.event_shape),
            "context_dim": self.context_dim,
            "latent_dim": self.latent_dim,
            "channels": list(channels),
            "embedding": int(embedding),
            "lr_generator": float(lr_generator),
            "lr_discriminator": float(lr_discriminator),
            "betas": [float(b) for b in betas],
            "spectral_norm": bool(spectral_norm),
            "divergence_loss": float(divergence_loss),
            "divergence_steps": int(divergence_steps),
        }
        self.divergence: str | None = None
        self._streak = self._steps = 0
        # (score sum, rows, weights copy) of the validation pass in progress
        self._val: tuple[float, int, dict[str, Tensor]] | None = None
        self._best: tuple[float, dict[str, Tensor]] | None = None

    # ------------------------------------------------------------------ networks
    def critic_parameters(self) -> list[nn.Parameter]:
        return [
            *self.critic.parameters(),
            *self.head.parameters(),
            *(self.project.parameters() if self.project else []),
        ]

    def discriminate(self, x: Tensor, c: Tensor | None, *, frozen: bool = False) -> Tensor:
        """Critic logits: x ``(N, *event)``, c ``(N, C)`` -> ``(N,)``; ``frozen``: detached weights."""
        phi = self.critic(x.reshape(-1, *self._chw), frozen=frozen).sum((-2, -1))
        w, b = (self.head.weight.detach(), self.head.bias.detach()) if frozen else (self.head.weight, self.head.bias)
        out = F.linear(phi, w, b).squeeze(-1)
        if self.project is not None and c is not None:
            pw = self.project.weight.detach() if frozen else self.project.weight
            out = out + (F.linear(c, pw) * phi).sum(-1)
        return out

    def generate(self, c: Tensor | None, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n fields (one per row of c ``(n, C)``) -> ``(n, *event)``."""
        ref = self.head.weight
        z = torch.randn(n, self.latent_dim, generator=generator, device=ref.device, dtype=ref.dtype)
        return self.generator(z, c).reshape(n, *self.event_shape)

    # ------------------------------------------------------------------ losses
    def _losses(self, target: Tensor, context: Tensor | None, generator) -> tuple[Tensor, Tensor]:
        fake = self.generate(context, len(target), generator)
        loss_d = (
            F.softplus(-self.discriminate(target, context)).mean()
            + F.softplus(self.discriminate(fake.detach(), context)).mean()
        )
        loss_g = F.softplus(-self.discriminate(fake, context, frozen=True)).mean()
        return loss_d, loss_g

    def _watch(self, loss_d: Tensor, loss_g: Tensor) -> None:
        """Close the last validation pass; raise on non-finite losses; count steps the critic wins outright."""
        self._close_validation()
        self._steps += 1
        ld, lg = float(loss_d.detach()), float(loss_g.detach())
        if not (math.isfinite(ld) and math.isfinite(lg)):
            self._fail(
                f"GAN losses became non-finite at training step {self._steps} (discriminator {ld}, generator {lg})"
            )
        self._streak = self._streak + 1 if lg > self.config["divergence_loss"] else 0
        if self._streak >= self.config["divergence_steps"] and self.divergence is None:
            self.divergence = (
                f"GAN training diverged: the generator loss stayed above {self.config['divergence_loss']:g} "
                f"for {self._streak} steps (last: discriminator {ld:.3g}, generator {lg:.3g})"
            )

    def _fail(self, what: str) -> None:
        """Restore the best validated weights (if any) and raise a TrainingError saying what to change."""
        best = self._best
        if best is not None:
            self.load_state_dict(best[1])
        from physgen.train import TrainingError

        raise TrainingError(
            what
            + "; "
            + (
                f"the GAN's weights were reset to its best validated epoch (energy score {best[0]:.4g})"
                if best is not None
                else "no epoch was validated yet"
            )
            + "; with checkpoint_dir= the checkpoint keeps the best weights too. Lower lr_generator and "
            "lr_discriminator (model_options) or clip_norm, and train again"
        )

    def _close_validation(self) -> None:
        if self._val is not None:
            total, rows, state = self._val
            score = total / max(rows, 1)
            if self._best is None or score < self._best[0]:
                self._best = (score, state)
            self._val = None

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """Training (train mode): L_D + L_G with the detaching of the module docstring. Validation (eval mode):
        the energy score of two draws per row. target ``(B, *event)``, context ``(B, C)`` -> scalar."""
        if not self.training:
            fake1, fake2 = (
                self.generate(context, len(target), generator),
                self.generate(context, len(target), generator),
            )
            score = energy_score(
                target.reshape(-1, *self._chw), fake1.reshape(-1, *self._chw), fake2.reshape(-1, *self._chw)
            )
            if not math.isfinite(float(score)):
                self._val = None
                self._fail(
                    f"the GAN's validation score became non-finite ({float(score)}) after {self._steps} training steps"
                )
            if self._val is None:
                self._val = (0.0, 0, copy.deepcopy(self.state_dict()))
            total, rows, state = self._val
            self._val = (total + float(score.detach()) * len(target), rows + len(target), state)
            return score
        loss_d, loss_g = self._losses(target, context, generator)
        self._watch(loss_d, loss_g)
        return loss_d + loss_g

    def training_step(
        self, batch: tuple[Tensor, ...], optimizers: dict, *, generator: torch.Generator | None = None
    ) -> float:
        """Alternating updates for ``physgen.fit(gan, (target, context), optimizer=gan_optimizers())``: one critic
        step on L_D, then one generator step on L_G; returns L_D + L_G before the steps."""
        target, context = batch[0], batch[1] if len(batch) > 1 else None
        loss_d, loss_g = self._losses(target, context, generator)
        self._watch(loss_d, loss_g)
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers["discriminator"].step()
        optimizers["generator"].zero_grad(set_to_none=True)
        fake = self.generate(context, len(target), generator)
        F.softplus(-self.discriminate(fake, context, frozen=True)).mean().backward()
        optimizers["generator"].step()
        return float((loss_d + loss_g).detach())

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self, shape: tuple[int, ...], context: Tensor | None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Fields: context ``(*Bc, C)`` -> ``(*shape, *Bc, *event)``."""
        shape = tuple(shape)
        n = math.prod(shape)
        if context is None:
            return self.generate(None, n, generator).reshape(*shape, *self.event_shape)
        bc = context.shape[:-1]
        rows = context.reshape(-1, context.shape[-1])
        c = rows.expand(n, *rows.shape).reshape(-1, rows.shape[-1])
        return self.generate(c, len(c), generator).reshape(*shape, *bc, *self.event_shape)
