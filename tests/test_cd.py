"""Consistency distillation: the parametrisation's boundary, the target is the teacher's ODE step
(on an exact mixture denoiser), the teacher stays frozen, the student samples alone, bad pairings
are one line. The tiny point teacher and trainer are test_add's."""

import math

import pytest
import torch
from genlab_cd import CD
from torch import nn

from genlab.checkpoint import load_model
from genlab.diffusion import ddim_sample, ddim_step, heun_sample
from genlab.distill import clean_estimate
from genlab.errors import GenlabError
from genlab.sampling import sample_main
from tests.test_add import (
    fit_keeps_teacher_frozen,
    points,
    round_trip_without_the_teacher,
    train_image_teacher,
    train_teacher,
    trainer,
)

FAST = {"num_intervals": 10, "lr": 1e-3}


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return train_teacher(tmp_path_factory.mktemp("teacher"))


class MixtureOracle(nn.Module):
    """The exact denoiser of an equal mixture of N(mu_k, S² I): E[x0 | x_t], as a prediction."""

    def __init__(self, schedule, prediction, mus, std=0.1):
        super().__init__()
        self.schedule, self.prediction, self.mus, self.std = schedule, prediction, mus, std

    def forward(self, x_t, t, labels):
        a = self.schedule.alpha_bar(t)[:, None, None]  # (B, 1, 1) against (B, K, D)
        var = a * self.std**2 + 1 - a
        diff = x_t[:, None] - a.sqrt() * self.mus  # (B, K, D)
        r = torch.softmax(-diff.pow(2).sum(-1) / (2 * var[..., 0]), dim=1)  # (B, K)
        x0_k = self.mus + a.sqrt() * self.std**2 / var * diff
        x0 = (r[..., None] * x0_k).sum(1)
        eps = self.schedule.eps_from_x0(x_t, t, x0)
        return self.schedule.target(x0, eps, t, self.prediction)


def test_parametrisation_is_the_identity_at_the_smallest_noise_level(teacher_ckpt):
    model = CD(teacher_ckpt=str(teacher_ckpt), **FAST)
    t0 = torch.full((8,), model.grid[-1])
    c_skip, c_out = model.scalings(t0)
    assert torch.equal(c_skip, torch.ones(8)) and torch.equal(c_out, torch.zeros(8))
    x = torch.randn(8, 2)
    with torch.no_grad():
        f = model.consistency(model.student, x, t0, None)
    # The identity in EDM's variable y = x_t / sqrt(alpha_bar_t), where y = x0 + sigma eps.
    torch.testing.assert_close(f, x / model.schedule.alpha_bar(t0)[:, None].sqrt())
    # ... and not elsewhere: larger noise levels mix in the network's clean estimate.
    c_skip, c_out = model.scalings(torch.tensor(model.grid[:-1]))
    assert (c_skip < 1).all() and (c_out > 0).all()


def test_untrained_student_is_the_teachers_denoiser_away_from_the_boundary(teacher_ckpt):
    # The paper initialises F from the teacher's raw network, so f starts as the teacher's
    # denoiser wherever sigma >> sigma_min. Treating the clean estimate as the raw output
    # (the skip counted twice) returned about 1.2 x0 at sigma ~ sigma_data.
    model = CD(teacher_ckpt=str(teacher_ckpt), **FAST)
    sigma_min = float(model.sigma(torch.tensor(model.grid[-1])))
    torch.manual_seed(0)
    away = [t for t in model.grid if float(model.sigma(torch.tensor(t))) > 5 * sigma_min]
    assert len(away) >= len(model.grid) // 2
    for level in away:
        t, x = torch.full((64,), level), torch.randn(64, 2)
        with torch.no_grad():
            f = model.consistency(model.student, x, t, None)
            D = clean_estimate(model.teacher, model.schedule, model.prediction, x, t, None)
        assert (f - D).abs().max() <= 0.05 * D.abs().max(), level


@pytest.mark.parametrize(("solver", "sampler"), [("ddim", ddim_sample), ("heun", heun_sample)])
def test_distillation_target_is_the_teachers_ode_step(teacher_ckpt, solver, sampler):
    model = CD(teacher_ckpt=str(teacher_ckpt), solver=solver, num_intervals=99, max_timestep=99,
               spacing="timestep")
    angles = torch.arange(8) * 2 * math.pi / 8
    mus = torch.stack([angles.cos(), angles.sin()], 1) * 2
    model.teacher = MixtureOracle(model.schedule, model.prediction, mus)
    torch.manual_seed(0)
    path = []
    sampler(model.teacher, model.schedule, torch.randn(64, 2), prediction=model.prediction,
            steps=100, trajectory=path)
    assert len(path) == 101  # the sampler visits exactly the distillation grid
    x0 = torch.randn(64, 2)  # unused by distillation: the step starts from x_t alone
    for k in (0, 40, 97):
        t, s = torch.full((64,), model.grid[k]), torch.full((64,), model.grid[k + 1])
        step = model.neighbour(x0, path[k], t, s, torch.randn(64, 2), None)
        torch.testing.assert_close(step, path[k + 1])
    # The step onto the boundary (timestep 0) is Euler for either solver, as EDM's last step.
    t, s = torch.full((64,), model.grid[98]), torch.zeros(64, dtype=torch.long)
    torch.testing.assert_close(model.neighbour(x0, path[98], t, s, None, None), ddim_step(
        model.teacher, model.schedule, path[98], t, s, model.prediction))


def test_heun_chain_over_the_default_grid_recovers_an_exact_mixture():
    # The chain of teacher steps over the grid is the map CD learns. Over 18 levels even in
    # timesteps (the old grid), the last Heun step (cosine: sigma 0.1 to 0.006) lands halfway
    # between x_t and the mode, 86% of samples within 3 std; on EDM's ramp, 98% (exact: 98.9%).
    args = {"data_shape": [2], "hidden": [8], "emb_dim": 8, "num_timesteps": 1000,
            "prediction": "v"}
    model = CD(teacher_plugin="diffusion", teacher_args=args, method="training",
               num_intervals=18, solver="heun")
    model.hparams.method = "distillation"  # the exact denoiser as its teacher
    angles = torch.arange(8) * 2 * math.pi / 8
    mus = torch.stack([angles.cos(), angles.sin()], 1) * 4
    model.teacher = MixtureOracle(model.schedule, "v", mus, std=0.04)
    torch.manual_seed(0)
    x = torch.randn(2000, 2)
    for t, s in zip(model.grid, model.grid[1:]):
        x = model.neighbour(x, x, torch.full((2000,), t), torch.full((2000,), s), None, None)
    distance = torch.cdist(x / model.schedule.alpha_bar(torch.tensor(0)).sqrt(), mus).min(1)
    assert (distance.values <= 3 * 0.04).float().mean() >= 0.95


def test_teacher_unchanged_by_training_and_target_network_follows(teacher_ckpt, tmp_path):
    model = CD(teacher_ckpt=str(teacher_ckpt), **FAST)
    fit_keeps_teacher_frozen(model, tmp_path, 6)
    assert int(model.target.n_averaged) == 6


def test_student_samples_without_the_teacher_file(teacher_ckpt, tmp_path):
    loaded = round_trip_without_the_teacher(lambda path: CD(teacher_ckpt=path, **FAST),
                                            teacher_ckpt, tmp_path)
    sample_main(["--ckpt", str(tmp_path / "student.ckpt"), "--num", "4", "--steps", "2",
                 "--out", str(tmp_path / "samples")])
    assert (tmp_path / "samples.pt").is_file()
    with pytest.raises(GenlabError, match="without its teacher"):
        trainer(tmp_path, 2).fit(loaded, points())
    # A student is no diffusion model: distilling it is refused in one line.
    with pytest.raises(GenlabError, match="must be a diffusion checkpoint") as err:
        CD(teacher_ckpt=str(tmp_path / "student.ckpt"))
    assert "\n" not in str(err.value)


def test_consistency_training_without_a_teacher(tmp_path):
    args = {"data_shape": [2], "hidden": [16], "emb_dim": 8, "num_timesteps": 50,
            "sample_steps": 4}
    model = CD(teacher_plugin="diffusion", teacher_args=args, method="training", **FAST)
    assert not hasattr(model, "teacher")
    before = [p.clone() for p in model.student.parameters()]
    fit = trainer(tmp_path, 4)
    fit.fit(model, points())
    assert any(not torch.equal(p, q) for p, q in zip(model.student.parameters(), before))
    fit.save_checkpoint(tmp_path / "ct.ckpt")
    loaded = load_model(tmp_path / "ct.ckpt")
    trainer(tmp_path, 6).fit(loaded, points(), ckpt_path=tmp_path / "ct.ckpt")  # no teacher
    assert torch.isfinite(loaded.sample_eval(8, steps=2)).all()


def test_bad_input(teacher_ckpt):
    with pytest.raises(GenlabError, match="teacher_ckpt is required"):
        CD()
    with pytest.raises(GenlabError, match="max_timestep"):
        CD(teacher_ckpt=str(teacher_ckpt), max_timestep=100)
    with pytest.raises(GenlabError, match="sample_steps"):
        CD(teacher_ckpt=str(teacher_ckpt), sample_steps=5)
    with pytest.raises(GenlabError, match="steps must be between 1 and 4"):
        CD(teacher_ckpt=str(teacher_ckpt), **FAST).sample(2, steps=5)
    with pytest.raises(GenlabError, match="weighting must be uniform or inverse_gap"):
        CD(teacher_ckpt=str(teacher_ckpt), weighting="snr")
    with pytest.raises(GenlabError, match="ramp_sigma_min must be > 0 with spacing: karras"):
        CD(teacher_ckpt=str(teacher_ckpt), spacing="timestep", ramp_sigma_min=0.1)


def test_sampling_levels_are_distillation_levels_and_weighting(teacher_ckpt):
    # f is trained at the grid's levels only: multistep sampling must not land between them.
    model = CD(teacher_ckpt=str(teacher_ckpt), **FAST)
    for steps in (1, 2, 4):
        levels = model.sampling_timesteps(steps)
        assert levels[0] == model.grid[0] and set(levels) <= set(model.grid[:-1])
    t, s = torch.tensor(model.grid[:-1]), torch.tensor(model.grid[1:])
    assert torch.equal(model.weight(t, s), torch.ones(len(t)))
    model.hparams.weighting = "inverse_gap"
    w = model.weight(t, s)
    torch.testing.assert_close(w, 1 / (model.sigma(t) - model.sigma(s)))
    assert w[-1] > 10 * w[0]  # low-noise pairs weigh more


def test_image_teacher_with_heun_and_pseudo_huber(tmp_path):
    teacher, data = train_image_teacher(tmp_path)
    model = CD(teacher_ckpt=str(teacher), solver="heun",
               distance="pseudo_huber", **FAST)
    assert model.modality == "image"
    trainer(tmp_path, 2).fit(model, data)
    samples = model.sample_eval(4, steps=4)
    assert samples.shape == (4, 1, 8, 8) and samples.abs().max() <= 1
