"""ADD training runs: resume, bf16-mixed with clipping and a schedule, an image (U-Net) teacher,
a class-conditional teacher. The tiny point teacher and helpers are test_add's."""

import pytest
import torch
from genlab_add import ADD
from genlab_diffusion import Diffusion
from torch.utils.data import DataLoader

from genlab.errors import GenlabError
from tests.test_add import FAST, points, train_image_teacher, train_teacher, trainer


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return train_teacher(tmp_path_factory.mktemp("teacher"))


def test_resume_continues_from_the_checkpoint(teacher_ckpt, tmp_path):
    model = ADD(teacher_ckpt=str(teacher_ckpt), **FAST)
    first = trainer(tmp_path, 4)  # manual optimization: two optimizer steps per batch
    first.fit(model, points())
    first.save_checkpoint(tmp_path / "mid.ckpt")
    resumed = ADD(teacher_ckpt=str(teacher_ckpt), **FAST)
    second = trainer(tmp_path, 8)
    second.fit(resumed, points(), ckpt_path=tmp_path / "mid.ckpt")
    assert second.global_step == 8
    assert int(resumed.student_ema.n_averaged) == 4
    for p, q in zip(resumed.teacher.parameters(), model.teacher.parameters()):
        assert torch.equal(p, q)  # the teacher came from its file, not the checkpoint


def test_bf16_mixed_training_with_clipping_and_cosine_schedule(teacher_ckpt, tmp_path):
    model = ADD(teacher_ckpt=str(teacher_ckpt), grad_clip=0.5, lr_schedule="cosine", **FAST)
    fit = trainer(tmp_path, 4, precision="bf16-mixed")
    fit.fit(model, points())
    assert all(torch.isfinite(p).all() for p in model.student.parameters())
    assert torch.isfinite(model.sample_eval(8)).all()
    # Two batches (four optimizer steps): both learning rates decayed to 0 over the two.
    assert [opt.param_groups[0]["lr"] for opt in fit.optimizers] == pytest.approx([0, 0])


def test_image_teacher(tmp_path):
    teacher, data = train_image_teacher(tmp_path)
    model = ADD(teacher_ckpt=str(teacher), **{**FAST, "r1_gamma": 0.0})
    # U-Net features: the end of each level on the way down, and the middle block.
    assert model.modality == "image"
    assert model.features.layers == ["down.0.0", "down.2.1", "mid.2"]
    assert [h.net[0].in_channels for h in model.heads.heads] == [8, 16, 16]
    trainer(tmp_path, 2).fit(model, data)
    samples = model.sample_eval(4, steps=4)
    assert samples.shape == (4, 1, 8, 8) and samples.abs().max() <= 1


def test_class_conditional_teacher(tmp_path):
    examples = [{"x": torch.randn(2), "label": torch.tensor(i % 3)} for i in range(32)]
    data = DataLoader(examples, batch_size=8)
    teacher = Diffusion(data_shape=[2], hidden=[16], emb_dim=8, num_timesteps=50,
                        num_classes=3, sample_steps=4, trajectory_frames=0)
    fit = trainer(tmp_path, 1)
    fit.fit(teacher, data)
    fit.save_checkpoint(tmp_path / "teacher.ckpt")
    model = ADD(teacher_ckpt=str(tmp_path / "teacher.ckpt"), **FAST)
    trainer(tmp_path, 4).fit(model, data)
    labels = torch.tensor([0, 2, 1, 2])
    samples = model.sample_eval(4, steps=2, labels=labels)
    assert samples.shape == (4, 2) and torch.isfinite(samples).all()
    with pytest.raises(GenlabError, match="class ids"):
        model.sample(2, labels=torch.tensor([0, 3]))
