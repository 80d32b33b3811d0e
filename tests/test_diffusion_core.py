"""genlab.diffusion: schedules, q_sample, conversions, samplers on an exact Gaussian oracle."""

import pytest
import torch

from genlab.diffusion import (
    NoiseSchedule,
    autoguidance,
    classifier_free_guidance,
    ddim_sample,
    karras_timesteps,
    sample,
    timesteps,
)
from genlab.errors import GenlabError
from genlab.nn.point_denoiser import PointDenoiser
from genlab.nn.unet import UNet

MU = torch.tensor([0.5, -1.0])
STD = torch.tensor([0.3, 0.8])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_alphas_cumprod_monotone_with_endpoints(kind):
    s = NoiseSchedule(kind, 1000)
    ab = s.alphas_cumprod
    assert ab.shape == (1000,) and (ab[1:] < ab[:-1]).all()
    assert 0.999 < ab[0] < 1 and ab[-1] < 1e-4
    assert torch.allclose(torch.cumprod(s.alphas, 0), ab)
    assert s.alpha_bar(torch.tensor([-1])).item() == 1.0  # clean data
    if kind == "linear":
        assert s.betas[0].item() == pytest.approx(1e-4)
        assert s.betas[-1].item() == pytest.approx(0.02)


def test_schedule_holds_nothing_in_checkpoints():
    assert NoiseSchedule("cosine", 100).state_dict() == {}


def test_bad_schedule_is_a_clear_error():
    with pytest.raises(GenlabError, match="unknown noise schedule 'quadratic'"):
        NoiseSchedule("quadratic")


def test_q_sample_statistics():
    s = NoiseSchedule("linear", 1000)
    torch.manual_seed(0)
    x0 = torch.full((40_000, 1), 2.0)
    t = torch.full((40_000,), 300)
    x_t = s.q_sample(x0, t, torch.randn_like(x0))
    a = s.alphas_cumprod[300]
    assert x_t.mean().item() == pytest.approx(2 * a.sqrt().item(), abs=0.02)
    assert x_t.var().item() == pytest.approx(1 - a.item(), rel=0.03)


def test_eps_v_x0_conversions_agree():
    s = NoiseSchedule("cosine", 1000)
    torch.manual_seed(0)
    x0, eps = torch.randn(64, 3), torch.randn(64, 3)
    t = torch.randint(0, 1000, (64,))
    x_t = s.q_sample(x0, t, eps)
    for prediction in ("eps", "v", "x0"):
        target = s.target(x0, eps, t, prediction)
        got_x0, got_eps = s.to_x0_eps(target, x_t, t, prediction)
        # Near t = T-1 x0 = (x_t - ...) / sqrt(alpha_bar) amplifies float error, hence atol.
        assert torch.allclose(got_x0, x0, atol=1e-2) and torch.allclose(got_eps, eps, atol=1e-3)
    v = s.v_from_x0_eps(x0, eps, t)
    assert torch.allclose(s.x0_from_v(x_t, t, v), x0, atol=1e-4)
    assert torch.allclose(s.eps_from_v(x_t, t, v), eps, atol=1e-4)


def test_min_snr_weights_match_across_targets():
    s = NoiseSchedule("cosine", 1000)
    t = torch.tensor([0, 200, 500, 900])
    snr = s.snr(t)
    # The same x0-space weight min(snr, 5), expressed for each target's loss scale.
    x0_w = s.loss_weight(t, "x0", "min_snr", 5.0)
    assert torch.allclose(x0_w, snr.clamp(max=5.0))
    assert torch.allclose(s.loss_weight(t, "eps", "min_snr", 5.0) * snr, x0_w, rtol=1e-4)
    assert torch.allclose(s.loss_weight(t, "v", "min_snr", 5.0) * (snr + 1), x0_w, rtol=1e-4)


def test_timesteps_are_even_and_bounded():
    s = NoiseSchedule("linear", 1000)
    assert timesteps(s, 4) == [999, 666, 333, 0]
    assert timesteps(s) == list(range(999, -1, -1))
    with pytest.raises(GenlabError, match="steps must be between 1 and 1000"):
        timesteps(s, 0)


def test_karras_timesteps_follow_the_ramp_down_to_zero():
    s = NoiseSchedule("cosine", 1000)
    sigma = ((1 - s.alphas_cumprod) / s.alphas_cumprod).sqrt()
    grid = karras_timesteps(s, 999, 18)
    assert grid[0] == 999 and grid[-1] == 0 and len(grid) == 19
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert sigma[999] > 1e3 and 75 < sigma[grid[1]] < 85  # the ramp starts at EDM's sigma_max
    # The last step is short (even timesteps: sigma 0.1 down to sigma_0 = 0.006).
    assert sigma[grid[-2]] < 0.05
    ramp = karras_timesteps(s, 999, 10, sigma_min=0.15)  # the ramp ends above 0, then one step
    assert len(ramp) == 11 and ramp[-1] == 0 and 0.14 < sigma[ramp[-2]] < 0.16
    with pytest.raises(GenlabError, match="intervals <= top"):
        karras_timesteps(s, 10, 11)


def gaussian_oracle(s: NoiseSchedule, prediction: str):
    """The exact denoiser of N(MU, diag(STD²)) data: E[x0 | x_t] is linear in x_t."""

    def denoiser(x_t, t, labels):
        a = s.alpha_bar(t)[:, None]
        x0 = MU + a.sqrt() * STD**2 / (a * STD**2 + 1 - a) * (x_t - a.sqrt() * MU)
        eps = s.eps_from_x0(x_t, t, x0)
        return s.target(x0, eps, t, prediction)

    return denoiser


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize(("sampler", "T", "steps", "prediction"), [
    ("ddpm", 1000, 1000, "eps"), ("ddpm", 1000, 500, "v"), ("ddim", 200, 200, "x0"),
    ("heun", 200, 25, "v"),
])
def test_samplers_recover_gaussian_from_oracle(kind, sampler, T, steps, prediction):
    # Ancestral sampling needs fine steps to keep the variance (coarse ones shrink it a little).
    s = NoiseSchedule(kind, T)
    torch.manual_seed(0)
    x = sample(sampler, gaussian_oracle(s, prediction), s, torch.randn(3_000, 2),
               prediction=prediction, steps=steps)
    assert torch.allclose(x.mean(0), MU, atol=0.05)
    assert torch.allclose(x.std(0), STD, rtol=0.05)


def test_ddim_eta_zero_is_deterministic_given_noise():
    s = NoiseSchedule("cosine", 100)
    net = PointDenoiser(hidden=(16,), emb_dim=8).eval()
    noise = torch.randn(8, 2)
    torch.manual_seed(0)
    a = ddim_sample(net, s, noise, steps=10, eta=0.0)
    torch.manual_seed(1)  # different global RNG: no effect without fresh noise
    b = ddim_sample(net, s, noise, steps=10, eta=0.0)
    assert torch.equal(a, b)
    c = ddim_sample(net, s, noise, steps=10, eta=1.0)
    assert not torch.equal(a, c)


def test_trajectory_records_every_step():
    s = NoiseSchedule("linear", 50)
    path = []
    out = sample("ddpm", gaussian_oracle(s, "eps"), s, torch.randn(4, 2), steps=10, trajectory=path)
    assert len(path) == 11 and torch.equal(path[-1], out)


def test_guidance_scale_one_is_the_conditional_prediction():
    net = UNet(1, 16, (1, 2), 1, (1,), num_classes=3, groups=8).eval()
    for p in net.parameters():  # zero-initialised layers would hide the label's effect
        if not p.any():
            torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([3, 50, 500, 900])
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        cond, uncond = net(x, t, labels), net(x, t, torch.full_like(labels, 3))
        assert torch.allclose(classifier_free_guidance(net, 1.0, 3)(x, t, labels), cond)
        assert torch.allclose(classifier_free_guidance(net, 0.0, 3)(x, t, labels), uncond,
                              atol=1e-5)
        guided = classifier_free_guidance(net, 3.0, 3)(x, t, labels)
        assert torch.allclose(guided, uncond + 3 * (cond - uncond), atol=1e-5)
        assert not torch.allclose(cond, uncond)


def test_autoguidance_extrapolates_away_from_the_guide():
    torch.manual_seed(0)
    strong, weak = PointDenoiser(2, [16], emb_dim=8), PointDenoiser(2, [8], emb_dim=8)
    x, t = torch.randn(5, 2), torch.tensor([0, 10, 20, 30, 40])
    with torch.no_grad():
        s, w = strong(x, t, None), weak(x, t, None)
        assert torch.equal(autoguidance(strong, weak, 1.0)(x, t, None), s)
        assert torch.allclose(autoguidance(strong, weak, 2.5)(x, t, None), w + 2.5 * (s - w))
        assert not torch.allclose(s, w)


def test_unet_keeps_shape_and_null_class():
    net = UNet(3, 16, (1, 2, 2), 1, (2,), num_classes=10, groups=8)
    x = torch.randn(2, 3, 16, 16)
    assert net(x, torch.tensor([0, 999]), torch.tensor([4, 10])).shape == x.shape
    assert net(x, torch.tensor([0, 999])).shape == x.shape  # no labels: the null class
