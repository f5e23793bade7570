"""IsingSummaryEncoder ("ising_summary"): the Ising sufficient statistics of a periodic lattice -> MLP."""

import pytest
import torch

from physgen.nn.lattice_summary import IsingSummaryEncoder, lattice_summary
from simulators.ising import Ising
from simulators.ising.exact import bond_sum, magnetisation_sum


def spins(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randint(0, 2, shape, generator=g) - 1).float()


def test_summary_is_bond_sum_and_magnetisation_per_site():
    s = spins(5, 3, 6, 8)
    z = lattice_summary(s)
    assert z.shape == (5, 3, 3)
    torch.testing.assert_close(z[..., 0], bond_sum(s) / 48)
    torch.testing.assert_close(z[..., 1], magnetisation_sum(s) / 48)
    torch.testing.assert_close(z[..., 2], z[..., 1].abs())
    assert torch.equal(lattice_summary(torch.ones(4, 4)), torch.tensor([2.0, 1.0, 1.0]))
    checker = (-1.0) ** (torch.arange(4).unsqueeze(0) + torch.arange(4).unsqueeze(1))
    assert torch.equal(lattice_summary(checker), torch.tensor([-2.0, 0.0, 0.0]))  # the Néel state


def test_shapes_symmetries_and_gradients():
    enc = IsingSummaryEncoder((8, 8), out_features=5)
    x = spins(2, 7, 8, 8)
    out = enc(x)
    assert out.shape == (2, 7, 5) and enc.out_features == 5
    torch.testing.assert_close(enc(torch.roll(x, (3, 5), (-2, -1))), out)  # translations of the torus
    torch.testing.assert_close(enc(x.transpose(-1, -2)), out)  # the square lattice's reflection
    z = enc.summary(x)
    torch.testing.assert_close(enc.summary(-x)[..., [0, 2]], z[..., [0, 2]])  # b and |m| are even in s
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_standardize_from_sets_saved_buffers():
    sim = Ising(8, sweeps=20)
    x = sim.simulate(sim.prior.sample((400,)), generator=torch.Generator().manual_seed(1))
    enc = IsingSummaryEncoder((8, 8))
    enc.standardize_from(x)
    z = enc.summary(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(3), atol=1e-5, rtol=0)
    assert {"shift", "scale"} <= set(enc.state_dict())
    again = IsingSummaryEncoder(**enc.config)
    again.load_state_dict(enc.state_dict())
    torch.testing.assert_close(again(x[:10]), enc(x[:10]))
    assert again.name == "ising_summary" and again.x_standardization == "none" and again.accepts == ("lattice",)


def test_by_name_from_the_data_shape():
    from physgen.nn import encoder_for

    enc = encoder_for("ising_summary", (16, 16), out_features=8, hidden_features=[32])
    assert isinstance(enc, IsingSummaryEncoder) and enc.config["lattice_shape"] == [16, 16]
    assert enc(spins(3, 16, 16)).shape == (3, 8)


@pytest.mark.parametrize("x_shape, match", [((2,), r"\(L, L\).*'mlp'"), ((4, 8, 8), r"\(L, L\)")])
def test_refuses_what_is_not_a_lattice(x_shape, match):
    with pytest.raises(ValueError, match=match):
        IsingSummaryEncoder.from_x_shape(x_shape)
    with pytest.raises(ValueError, match="leave it out"):
        IsingSummaryEncoder.from_x_shape((8, 8), lattice_shape=(8, 8))


def test_wrong_lattice_size_names_the_expected_shape():
    enc = IsingSummaryEncoder((16, 16))
    with pytest.raises(ValueError, match=r"\(\*batch, 16, 16\)"):
        enc(spins(2, 8, 8))
    with pytest.raises(ValueError, match=r"\(\*batch, 16, 16\)"):
        enc.standardize_from(spins(2, 8, 8))
