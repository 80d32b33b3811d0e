"""RealNVP keeps genlab's plugin contract, inverts exactly and has the right log-density."""

import math

import torch
from genlab_flow import RealNVP

from genlab.data.toy import ToyDataModule
from genlab.testing import check_plugin


def perturbed(seed=0):
    torch.manual_seed(seed)
    flow = RealNVP(layers=4, hidden=[16])
    for p in flow.parameters():  # leave the identity start: test a non-trivial map
        p.data += 0.1 * torch.randn_like(p)
    return flow.double()


def test_conformance_with_ddp(tmp_path):
    data = ToyDataModule(train_size=256, val_size=64, batch_size=32)
    check_plugin("flow", data, tmp_path, init_args={"layers": 2, "hidden": [16]}, ddp=True)


def test_inverse_undoes_forward():
    flow = perturbed()
    x = torch.randn(64, 2, dtype=torch.float64)
    z, _ = flow.to_latent(x)
    for coupling in reversed(flow.couplings):
        z = coupling.inverse(z)
    torch.testing.assert_close(z, x)


def test_log_det_matches_the_jacobian():
    flow = perturbed()
    x = torch.randn(5, 2, dtype=torch.float64)
    _, log_det = flow.to_latent(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: flow.to_latent(v[None])[0][0], x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac).logabsdet)


def test_density_integrates_to_one():
    flow = perturbed()
    axis = torch.linspace(-8, 8, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = flow.log_likelihood({"x": grid}).exp()
    cell = (axis[1] - axis[0]) ** 2
    assert math.isclose(float(density.sum() * cell), 1.0, abs_tol=0.02)
