"""physgen.nn.field_summary: the binned log power spectrum encoder against a numpy P(k) estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgen.nn import encoder_for
from physgen.nn.field_summary import PowerSpectrumEncoder


def _numpy_log_power(x: np.ndarray, bins: int) -> np.ndarray:
    """Independent estimate on the full numpy FFT grid: mean |δ_m|^2 / N_c^2 per linear |m| bin, then ln."""
    dim, n = x.ndim, x.shape[0]
    f = np.fft.fftfreq(n, d=1 / n)
    mag = np.sqrt(sum(m**2 for m in np.meshgrid(*([f] * dim), indexing="ij")))
    p = np.abs(np.fft.fftn(x)) ** 2 / x.size**2
    edges = np.linspace(0.5, n / 2 + 0.5, bins + 1)
    out = []
    for b in range(bins):
        sel = (mag >= edges[b]) & (mag < edges[b + 1]) & (mag > 0)
        out.append(np.log(p[sel].mean()))
    return np.array(out)


@pytest.mark.parametrize("shape,bins", [((32, 32), 16), ((31, 31), 7), ((8, 8, 8), 4)])
def test_log_power_matches_numpy(shape, bins):
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0)) * 2.0 + 0.5
    enc = PowerSpectrumEncoder(shape, bins=bins)
    s = enc.log_power(x)
    assert s.shape == (3, bins)
    for b in range(3):
        np.testing.assert_allclose(s[b].double().numpy(), _numpy_log_power(x[b].double().numpy(), bins), rtol=0, atol=1e-4)


def test_standardize_forward_config_and_registry():
    from simulators.cosmology import GaussianField

    sim = GaussianField(32, 256.0, 2)
    x = sim.simulate(sim.prior.sample((256,)), generator=torch.Generator().manual_seed(1))
    enc = encoder_for("power_spectrum", (32, 32), out_features=8)
    assert isinstance(enc, PowerSpectrumEncoder) and enc.bins == 16 and enc.x_standardization == "none"
    assert enc.accepts == ("field",)
    enc.standardize_from(x)
    z = (enc.log_power(x) - enc.shift) / enc.scale
    assert torch.allclose(z.mean(0), torch.zeros(16), atol=1e-4) and torch.allclose(z.std(0), torch.ones(16), atol=1e-3)
    assert enc(x[:5]).shape == (5, 8) and enc(x[:6].reshape(2, 3, 32, 32)).shape == (2, 3, 8)
    clone = PowerSpectrumEncoder(**enc.config)
    clone.load_state_dict(enc.state_dict())
    assert torch.equal(clone(x[:4]), enc(x[:4]))
    assert "matrix" not in enc.state_dict()  # rebuilt from the config, not saved
    both = encoder_for("cnn+power_spectrum", (32, 32), cnn={"periodic": True}, power_spectrum={"bins": 8})
    both.standardize_from(x)
    assert both(x[:3]).shape == (3, both.out_features)


def test_bad_shapes_name_the_expected_shape():
    enc = PowerSpectrumEncoder((32, 32))
    with pytest.raises(ValueError, match=r"expected \(\*batch, 32, 32\)"):
        enc(torch.zeros(4, 16, 16))
    with pytest.raises(ValueError, match=r"square or cubic fields \(n, n\) or \(n, n, n\)"):
        PowerSpectrumEncoder((32, 16))
    with pytest.raises(ValueError, match=r"square or cubic"):
        encoder_for("power_spectrum", (100, 3))
    with pytest.raises(ValueError, match=r"holds no grid mode.*bins <= 4"):
        PowerSpectrumEncoder((8, 8), bins=40)
