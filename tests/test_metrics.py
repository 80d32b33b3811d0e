import torch

from genlab.data.toy import toy_modes
from genlab.metrics import ModeCoverage


def test_mode_coverage_exact_counts():
    modes, sigma = toy_modes("ring8"), 0.01
    samples = torch.cat([
        modes[0].repeat(10, 1),                                  # 10 exact hits on mode 0
        modes[1] + torch.tensor([2 * sigma, 0.0]).repeat(5, 1),  # 5 within 3 sigma of mode 1
        modes[2] + torch.tensor([0.0, 4 * sigma]).repeat(5, 1),  # 5 too far from mode 2
        torch.zeros(3, 2),                                       # 3 in the hole of the ring
    ])
    metric = ModeCoverage(modes, sigma)
    metric.update(samples[:7])
    metric.update(samples[7:])
    result = metric.compute()
    assert metric.hq_per_mode.tolist() == [10, 5, 0, 0, 0, 0, 0, 0]
    assert int(metric.total) == 23
    assert int(result["modes_covered"]) == 2
    assert abs(float(result["high_quality"]) - 15 / 23) < 1e-6


def test_mode_coverage_boundary_is_inclusive_at_three_sigma():
    modes = toy_modes("grid25")
    assert modes.shape == (25, 2) and set(modes.flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    metric = ModeCoverage(modes, 0.05)
    metric.update(torch.tensor([[0.15, 0.0], [2.0, 2.1501]]))
    result = metric.compute()
    assert int(result["modes_covered"]) == 1 and float(result["high_quality"]) == 0.5


def test_ring_modes_are_on_unit_circle_without_duplicate_endpoint():
    modes = toy_modes("ring8")
    assert torch.allclose(modes.norm(dim=1), torch.ones(8))
    assert torch.allclose(modes[2], torch.tensor([0.0, 1.0]), atol=1e-6)
    assert torch.cdist(modes, modes).add(torch.eye(8)).min() > 0.7
