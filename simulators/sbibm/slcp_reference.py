"""Reference-posterior sampler of the sbibm SLCP task (used by :class:`simulators.sbibm.SLCP`).

An inverse-Wishart rejection sampler in float64 numpy, exact up to the estimated bound M (the math
is in the :mod:`simulators.sbibm.slcp` docstring and in :func:`slcp_reference`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["slcp_reference"]


def slcp_reference(pts: np.ndarray, n: int, seed: int, eps: float) -> tuple[np.ndarray, dict]:
    """Rejection sampler for SLCP's posterior (:mod:`simulators.sbibm.slcp`), numpy float64.

    Target over φ = (θ₃, θ₄, θ₅) (m integrated out): L(φ) = |S|^{-3/2} exp(-tr(S⁻¹W)/2) on the box,
    times P(N(x̄, S/4) in the box), realised by drawing m ~ N(x̄, S/4) and rejecting outside.
    Proposal: a mixture with exactly computed density q(φ):
      0.85: S ~ IW(W, 5/2) (Bartlett) mapped to φ with random signs; density IW(S)·|∂S/∂φ|/4,
            |∂S/∂φ| = 16|θ₃θ₄|⁵ sech²θ₅. L/q ∝ (|S|/|S - εI|)^{5/4}(1 - ρ²)^{1/4}: bounded unless
            θ₃ or θ₄ -> 0, where the image density vanishes but L (with ε) does not, hence:
      0.05 / 0.05: θ₃ (resp. θ₄) ~ U(-b, b), b = (100 ε)^{1/4}; the other scale from its
            IG(3/4, W_ii/2) marginal; θ₅ ~ U(-3, 3);
      0.03: θ₃, θ₄ ~ U(-b, b), θ₅ ~ U(-3, 3);   0.02: φ ~ U(box) (so L/q is bounded everywhere).
    Accept with probability (L/q)/M, M = 1.2 × the largest ratio of a 200,000-draw pilot
    (sbibm's ``multiplier_M``). If a later draw exceeds M, M is raised (counted) and the samples
    accepted so far are discarded, so every returned sample was accepted under the final M.

    Args:
        pts: ``(4, 2)`` observed points; n: number of samples; seed: numpy seed; eps: the jitter ε.

    Returns:
        θ ``(n, 5)`` float64, and a dict with ``acceptance``, ``log_M`` and ``bound_raised``.

    Raises:
        ValueError: the points are (nearly) collinear. RuntimeError: too few proposals accepted.
    """
    from scipy.special import gammaln

    xbar = pts.mean(0)
    dev = pts - xbar
    W = dev.T @ dev
    det_w = float(np.linalg.det(W))
    if not det_w > 1e-14 * max(float(np.trace(W)) ** 2, 1e-300):
        raise ValueError(
            f"slcp: the 4 observed points are (nearly) collinear; scatter matrix {W.tolist()} is singular."
        )
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(np.linalg.inv(W))
    nu, hi, b = 2.5, 3.0, (100 * eps) ** 0.25
    weights = np.array([0.85, 0.05, 0.05, 0.03, 0.02])
    log_w = np.log(weights)
    # log IW(S; W, ν) normaliser for p = 2: (ν/2) log|W| - ν log 2 - log Γ₂(ν/2).
    log_z = (
        0.5 * nu * math.log(det_w)
        - nu * math.log(2.0)
        - (0.5 * math.log(math.pi) + gammaln(nu / 2) + gammaln(nu / 2 - 0.5))
    )
    a_ig = (nu - 1) / 2  # S_ii ~ IG(a_ig, W_ii / 2) under IW(W, ν)

    def log_ig(x, scale):
        return a_ig * math.log(scale) - gammaln(a_ig) - (a_ig + 1) * np.log(x) - scale / x

    def scale_from_ig(k, scale):  # θ with θ⁴ + ε ~ IG(a_ig, scale), random sign; nan if impossible
        a = scale / rng.gamma(a_ig, 1.0, k) - eps
        return np.where(rng.random(k) < 0.5, -1.0, 1.0) * np.where(a > 0, np.abs(a) ** 0.25, np.nan)

    def log_scale_density(th, scale):  # density of scale_from_ig at th
        return log_ig(th**4 + eps, scale) + math.log(2.0) + 3 * np.log(np.abs(th) + 1e-300)

    def draw(k: int):
        comp = rng.choice(5, size=k, p=weights)
        phi = rng.uniform(-hi, hi, (k, 3))
        small = rng.uniform(-b, b, (k, 2))
        # component 0: inverse Wishart, Bartlett: X = L A Aᵀ Lᵀ ~ Wishart(W⁻¹, ν), S = X⁻¹.
        A = np.zeros((k, 2, 2))
        A[:, 0, 0] = np.sqrt(rng.chisquare(nu, k))
        A[:, 1, 1] = np.sqrt(rng.chisquare(nu - 1.0, k))
        A[:, 1, 0] = rng.standard_normal(k)
        LA = L @ A
        S = np.linalg.inv(LA @ LA.transpose(0, 2, 1))
        a1, a2 = S[:, 0, 0] - eps, S[:, 1, 1] - eps
        pos = (a1 > 0) & (a2 > 0)
        a1, a2 = np.where(pos, a1, 1.0), np.where(pos, a2, 1.0)
        rho = np.clip(S[:, 0, 1] / np.sqrt(a1 * a2), -1.0, 1.0)
        signs = np.where(rng.random((k, 2)) < 0.5, -1.0, 1.0)
        with np.errstate(divide="ignore"):
            iw = np.stack([signs[:, 0] * a1**0.25, signs[:, 1] * a2**0.25, np.arctanh(rho)], 1)
        iw[~pos] = np.nan
        u_ig, w_ig = scale_from_ig(k, W[0, 0] / 2), scale_from_ig(k, W[1, 1] / 2)
        phi[comp == 0] = iw[comp == 0]
        c1, c2, c3 = comp == 1, comp == 2, comp == 3
        phi[c1, 0], phi[c1, 1] = small[c1, 0], w_ig[c1]
        phi[c2, 0], phi[c2, 1] = u_ig[c2], small[c2, 1]
        phi[c3, 0], phi[c3, 1] = small[c3, 0], small[c3, 1]
        valid = np.all(np.isfinite(phi) & (phi >= -hi) & (phi < hi), axis=1)
        phi = np.where(valid[:, None], phi, 1.0)
        u, w, t = phi[:, 0], phi[:, 1], phi[:, 2]
        s11, s22, s12 = u**4 + eps, w**4 + eps, np.tanh(t) * u**2 * w**2
        det = u**4 * w**4 / np.cosh(t) ** 2 + eps * (u**4 + w**4) + eps**2
        tr = (s22 * W[0, 0] - 2 * s12 * W[0, 1] + s11 * W[1, 1]) / det
        log_lik = -1.5 * np.log(det) - 0.5 * tr
        in_u, in_w = np.abs(u) < b, np.abs(w) < b
        log_jac = math.log(16.0) + 5 * np.log(np.abs(u * w) + 1e-300) - 2 * np.log(np.cosh(t))
        log_t = -math.log(2 * hi)
        terms = np.stack(
            [
                log_z - 2.75 * np.log(det) - 0.5 * tr + log_jac - math.log(4.0),
                np.where(in_u, -math.log(2 * b), -np.inf) + log_scale_density(w, W[1, 1] / 2) + log_t,
                np.where(in_w, -math.log(2 * b), -np.inf) + log_scale_density(u, W[0, 0] / 2) + log_t,
                np.where(in_u & in_w, -2 * math.log(2 * b), -np.inf) + log_t,
                np.full(k, -3 * math.log(2 * hi)),
            ],
            1,
        )
        log_q = np.logaddexp.reduce(terms + log_w, axis=1)
        log_r = np.where(valid, log_lik - log_q, -np.inf)
        return phi, s11, s12, det, log_r

    tried, raised = 0, 0
    log_m = math.log(1.2) + float(draw(200_000)[-1].max())
    out: list[np.ndarray] = []
    have, k = 0, max(4096, 2 * n)
    while have < n:
        if tried > 500_000_000:
            raise RuntimeError("slcp: reference sampler accepted too few proposals; is x_obs a valid SLCP observation?")
        phi, s11, s12, det, log_r = draw(k)
        if log_r.max() > log_m:  # the pilot missed the supremum: raise M and start again
            log_m, raised = math.log(1.2) + float(log_r.max()), raised + 1
            out, have = [], 0
        ok = np.log(rng.random(k)) < log_r - log_m
        # m | S ~ N(x̄, S/4) through the Cholesky factor of S/4.
        l11 = np.sqrt(s11 / 4)
        l21 = s12 / 4 / l11
        l22 = np.sqrt(np.maximum(det / 16 / l11**2, 0.0))
        e = rng.standard_normal((k, 2))
        m = np.stack([xbar[0] + l11 * e[:, 0], xbar[1] + l21 * e[:, 0] + l22 * e[:, 1]], 1)
        ok &= np.all((m >= -hi) & (m < hi), axis=1)
        out.append(np.concatenate([m, phi], 1)[ok])
        have += int(ok.sum())
        tried += k
        k = int(min(max(4096, 1.2 * (n - have) / max(have / tried, 1e-5)), 1_000_000))
    info = {"acceptance": have / tried, "log_M": log_m, "bound_raised": raised}
    return np.concatenate(out)[:n], info
