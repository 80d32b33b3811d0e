"""Adversarial diffusion distillation: a tiny diffusion teacher trained here, then the student.

The teacher stays frozen, the distillation target is the teacher's prediction, the
discriminator's loss reaches only its heads, the student starts as the teacher's one-step
denoiser, and the student's checkpoint samples (and resumes) without surprises.
"""

import shutil

import lightning as L
import pytest
import torch
from genlab_add import ADD
from genlab_diffusion import Diffusion

from genlab.checkpoint import load_model
from genlab.data.toy import ToyDataModule
from genlab.errors import GenlabError
from genlab.sampling import sample_main

FAST = {"lr": 1e-3, "lr_disc": 1e-3, "head_width": 8, "r1_gamma": 0.1}


def trainer(root, steps, **kwargs):
    options = dict(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0, default_root_dir=root)
    return L.Trainer(**{**options, **kwargs})


def points():
    return ToyDataModule(train_size=128, val_size=32, batch_size=32)


def train_teacher(root):
    """A tiny point diffusion model trained for a few steps and saved by a Trainer."""
    L.seed_everything(0, verbose=False)
    model = Diffusion(data_shape=[2], hidden=[16, 16], emb_dim=16, num_timesteps=100,
                      prediction="eps", data_scale=0.5, sample_steps=4, ema_decay=0.5)
    fit = trainer(root, 8)
    fit.fit(model, points())
    fit.save_checkpoint(root / "teacher.ckpt")
    return root / "teacher.ckpt"


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return train_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture()
def teacher(teacher_ckpt):
    return load_model(teacher_ckpt)


def train_image_teacher(root):
    """A tiny 8x8 image diffusion teacher trained one step; its checkpoint and data."""
    from torch.utils.data import DataLoader

    images = [{"x": torch.rand(1, 8, 8) * 2 - 1} for _ in range(16)]
    data = DataLoader(images, batch_size=8)
    teacher = Diffusion(data_shape=[1, 8, 8], channels=8, channel_mults=[1, 2],
                        num_res_blocks=1, attention_levels=[1], num_timesteps=50,
                        sample_steps=4, trajectory_frames=0)
    fit = trainer(root, 1)
    fit.fit(teacher, data)
    fit.save_checkpoint(root / "teacher.ckpt")
    return root / "teacher.ckpt", data


def fit_keeps_teacher_frozen(model, root, steps=6):
    """Fit a student ``steps`` steps; assert its teacher is unchanged and its student moved."""
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student_before = [p.clone() for p in model.student.parameters()]
    trainer(root, steps).fit(model, points())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not model.teacher.training  # fit switched the rest to train mode, not the teacher
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(p, q) for p, q in zip(model.student.parameters(),
                                                     student_before))


def teacher_x0(teacher, x_t, t):
    out = teacher.ema.module(x_t, t, None)
    return teacher.schedule.to_x0_eps(out, x_t, t, teacher.hparams.prediction)[0]


def test_teacher_stays_frozen(teacher_ckpt, tmp_path):
    fit_keeps_teacher_frozen(ADD(teacher_ckpt=str(teacher_ckpt), **FAST), tmp_path)


def test_distillation_target_equals_teacher_prediction(teacher_ckpt, teacher):
    model = ADD(teacher_ckpt=str(teacher_ckpt))
    x0 = torch.randn(16, 2, requires_grad=True)
    t = torch.randint(0, 100, (16,))
    noise = torch.randn(16, 2)
    target = model.distillation_target(x0, t, noise, None)
    x_t = teacher.schedule.q_sample(x0.detach(), t, noise)
    with torch.no_grad():
        torch.testing.assert_close(target, teacher_x0(teacher, x_t, t))
    assert not target.requires_grad  # the paper's stop-gradient


def test_distillation_gradient_is_weighted_pull_toward_teacher(teacher_ckpt):
    """d/dx0 of mean_b c(t_b) mean_i (x0 - target)² = 2 c(t) (x0 - target) / (B D)."""
    for weighting in ("exponential", "sds", "none"):
        model = ADD(teacher_ckpt=str(teacher_ckpt), distill_weighting=weighting)
        x0 = torch.randn(8, 2, requires_grad=True)
        torch.manual_seed(3)
        model.distillation_loss(x0, None).backward()
        torch.manual_seed(3)
        t = torch.randint(0, model.max_timestep + 1, (8,))
        target = model.distillation_target(x0, t, torch.randn(8, 2), None)
        a = model.schedule.alpha_bar(t)
        c = {"exponential": a.sqrt(), "sds": a.sqrt() * (1 - a).sqrt() / 2,
             "none": torch.ones(8)}[weighting]
        want = 2 * c[:, None] * (x0.detach() - target) / x0.numel()
        torch.testing.assert_close(x0.grad, want)


def test_discriminator_gradient_reaches_only_its_heads(teacher_ckpt):
    model = ADD(teacher_ckpt=str(teacher_ckpt), **FAST)
    real = torch.randn(8, 2)
    fake = model.student_forward(real, None)  # with the student's graph, as in training
    loss, logs = model.discriminator_loss(real, fake)
    loss.backward()
    assert "train/r1" in logs
    assert all(p.grad is not None for p in model.heads.parameters())
    # (the last biases get exactly 0: the hinge's real and fake terms cancel on them)
    assert all(head.net[0].weight.grad.abs().sum() > 0 for head in model.heads.heads)
    assert all(p.grad is None for p in model.student.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())


def test_student_at_init_reproduces_teacher_one_step_denoising(teacher_ckpt, teacher):
    model = ADD(teacher_ckpt=str(teacher_ckpt)).eval()
    x_t = torch.randn(16, 2)
    with torch.no_grad():
        for s in model.student_timesteps:
            t = torch.full((16,), s)
            torch.testing.assert_close(model.x0(model.student, x_t, t, None),
                                       teacher_x0(teacher, x_t, t))
        # One-step sampling is the teacher's clean estimate of pure noise at the first timestep.
        torch.manual_seed(0)
        one_step = model.sample(16, steps=1)
        torch.manual_seed(0)
        noise = torch.randn(16, 2)
    t = torch.full((16,), model.student_timesteps[0])
    with torch.no_grad():
        want = teacher_x0(teacher, noise, t) * teacher.hparams.data_scale
    torch.testing.assert_close(one_step, want)


def test_student_timesteps_and_eps_teacher_top(teacher_ckpt):
    model = ADD(teacher_ckpt=str(teacher_ckpt))
    # An eps teacher: the first timestep keeps alpha_bar >= 0.0047 (SDXL's last one).
    top = model.student_timesteps[0]
    assert model.schedule.alpha_bar(torch.tensor(top)) >= 0.0047 > model.schedule.alpha_bar(
        torch.tensor(top + 1))
    assert model.student_timesteps == sorted(model.student_timesteps, reverse=True)
    assert model.sampling_timesteps(4) == model.student_timesteps
    assert model.sampling_timesteps(2) == model.student_timesteps[::2]
    assert ADD(teacher_ckpt=str(teacher_ckpt), max_timestep=99).student_timesteps == \
        [99, 74, 49, 24]  # the paper's 999, 749, 499, 249 at T = 100


def round_trip_without_the_teacher(make, teacher_ckpt, root, frozen=("teacher.",)):
    """Fit ``make(teacher_path)`` 4 steps from a copy of the teacher, save it, delete the copy:
    the reloaded student samples as the trained one at 1, 2 and 4 steps. Returns it."""
    teacher_copy = root / "teacher.ckpt"
    shutil.copy(teacher_ckpt, teacher_copy)
    model = make(str(teacher_copy))
    fit = trainer(root, 4)
    fit.fit(model, points())
    fit.save_checkpoint(root / "student.ckpt")
    teacher_copy.unlink()  # the student must not need it to sample
    state = torch.load(root / "student.ckpt", weights_only=True)
    assert not any(k.startswith(frozen) for k in state["state_dict"])
    assert "teacher_ckpt" not in state["hyper_parameters"]
    loaded = load_model(root / "student.ckpt")
    for steps in (1, 2, 4):
        samples = []
        for m in (model, loaded):
            torch.manual_seed(0)
            samples.append(m.sample_eval(8, steps=steps))
        torch.testing.assert_close(samples[0], samples[1])
        assert torch.isfinite(samples[0]).all()
    return loaded


def test_checkpoint_round_trip_without_the_teacher_file(teacher_ckpt, tmp_path):
    loaded = round_trip_without_the_teacher(lambda path: ADD(teacher_ckpt=path, **FAST),
                                            teacher_ckpt, tmp_path, ("teacher.", "features."))
    sample_main(["--ckpt", str(tmp_path / "student.ckpt"), "--num", "4", "--steps", "2",
                 "--out", str(tmp_path / "samples")])
    assert (tmp_path / "samples.pt").is_file()
    with pytest.raises(GenlabError, match="without its teacher"):
        trainer(tmp_path, 2).fit(loaded, points())


def test_built_by_the_cli_from_a_config(teacher_ckpt, tmp_path, monkeypatch):
    """LightningCLI builds the model inside a context holding its init args: the teacher loaded
    in there must still get its own hyperparameters."""
    from genlab.cli import GenlabCLI

    monkeypatch.setenv("WANDB_MODE", "offline")
    config = tmp_path / "add.yaml"
    config.write_text(f"model:\n  class_path: ADD\n  init_args:\n    teacher_ckpt: {teacher_ckpt}\n"
                      f"data:\n  class_path: ToyDataModule\ntrainer:\n  logger: false\n")
    cli = GenlabCLI(args=["--config", str(config), "--run.root", str(tmp_path)], run=False)
    assert cli.model.hparams.teacher_args["hidden"] == [16, 16]
    assert cli.model.data_shape == (2,)


def test_bad_input(teacher_ckpt, tmp_path):
    with pytest.raises(GenlabError, match="teacher_ckpt is required"):
        ADD()
    with pytest.raises(GenlabError, match="sample_steps"):
        ADD(teacher_ckpt=str(teacher_ckpt), sample_steps=5)
    with pytest.raises(GenlabError, match="max_timestep"):
        ADD(teacher_ckpt=str(teacher_ckpt), max_timestep=100)
    with pytest.raises(GenlabError, match="feature_network"):
        ADD(teacher_ckpt=str(teacher_ckpt), feature_network="nowhere.Backbone")
    with pytest.raises(GenlabError, match="feature_layers"):
        ADD(teacher_ckpt=str(teacher_ckpt), feature_layers=["nope"])
    model = ADD(teacher_ckpt=str(teacher_ckpt))
    with pytest.raises(GenlabError, match="steps must be between 1 and 4"):
        model.sample(2, steps=5)
    with pytest.raises(GenlabError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))
    # A config may name a teacher not trained yet: it builds, and fit says what is missing.
    later = ADD(teacher_ckpt=str(tmp_path / "not_yet.ckpt"))
    with pytest.raises(GenlabError, match="does not exist; train the teacher first"):
        trainer(tmp_path, 2).fit(later, points())
