"""RealNVP inverts exactly and has the right log-density.

Its conformance case (``RealNVP.conformance_case``) runs in genlab's tests/test_plugins.py, with
every other registered plugin; ``genlab.testing.check_case("flow", tmp_path)`` runs it alone.
"""

import math

import torch
from genlab_flow import RealNVP


def perturbed(seed=0):
    torch.manual_seed(seed)
    flow = RealNVP(layers=4, hidden=[16])
    for p in flow.parameters():  # leave the identity start: test a non-trivial map
        p.data += 0.1 * torch.randn_like(p)
    return flow.double()


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
