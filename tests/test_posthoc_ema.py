"""Post-hoc EMA: power-function averages, their least-squares reconstruction (exact for a tracked
length, stable for others), exact resume, and `genlab ema` writing a checkpoint that samples."""

import math

import lightning as L
import pytest
import torch
from genlab_diffusion import Diffusion

from genlab.callbacks import PostHocEMA, RNGState
from genlab.callbacks.posthoc_ema import PowerFunctionEMA, sigma_rel_to_gamma
from genlab.checkpoint import load_model
from genlab.cli import main as cli_main
from genlab.data.toy import ToyDataModule
from genlab.errors import GenlabError
from genlab.posthoc import reconstruct, write_checkpoint


def rel_error(a, b):
    num = sum((a[k] - b[k]).double().pow(2).sum() for k in a)
    return float(num.sqrt() / sum(b[k].double().pow(2).sum() for k in b).sqrt())


def test_gamma_of_the_papers_lengths():
    for sigma_rel, gamma in ((0.05, 16.97), (0.10, 6.94)):
        g = sigma_rel_to_gamma(sigma_rel)
        assert g == pytest.approx(gamma, abs=0.01)
        assert math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3))) == pytest.approx(sigma_rel)


def trajectory(steps, every, sigma_rels, tmp_path):
    """A drifting, noisy weight trajectory tracked by a PostHocEMA (snapshots every `every`) and,
    directly, by a PowerFunctionEMA of other lengths."""
    torch.manual_seed(0)
    callback = PostHocEMA(network="net", sigma_rels=(0.05, 0.10), every_n_steps=every)
    direct = PowerFunctionEMA(sigma_rels)
    freq, phase = torch.rand(64) * 3, torch.rand(64) * 6
    for t in range(1, steps + 1):
        w = torch.sin(freq * t / steps + phase) + 0.3 * torch.randn(64)
        state = {"w": w, "count": torch.tensor(t)}
        callback.ema.update(state)
        direct.update(state)
        if t % every == 0:
            callback.snapshot(tmp_path / "posthoc_ema")
    snapshots = [torch.load(p, weights_only=True)
                 for p in sorted((tmp_path / "posthoc_ema").glob("*.pt"))]
    return callback, direct, snapshots


def test_reconstruction_exact_for_tracked_and_stable_for_other_lengths(tmp_path):
    callback, direct, snapshots = trajectory(2000, 50, (0.07, 0.13), tmp_path)
    assert len(snapshots) == 40 and set(snapshots[0]["averages"][0]) == {"w"}
    for k, length in enumerate((0.05, 0.10)):  # tracked: the snapshot itself
        average, info = reconstruct(snapshots, length)
        assert rel_error(average, callback.ema.averages[k]) <= 1e-3
        assert info["weight_sum"] == pytest.approx(1, abs=1e-3)
    for k, length in enumerate((0.07, 0.13)):  # untracked: against the directly tracked one
        average, info = reconstruct(snapshots, length)
        assert rel_error(average, direct.averages[k]) <= 1e-2
        assert info["weight_sum"] == pytest.approx(1, abs=1e-2)
    with pytest.raises(GenlabError, match="outside what the snapshots support") as err:
        reconstruct(snapshots, 0.5)
    assert "\n" not in str(err.value)
    with pytest.raises(GenlabError, match="outside"):
        reconstruct(snapshots, 0.01)


def fit(root, steps, ckpt_path=None):
    L.seed_everything(0, verbose=False)
    model = Diffusion(data_shape=[2], hidden=[16], emb_dim=8, num_timesteps=50, sample_steps=4,
                      trajectory_frames=0)
    callback = PostHocEMA(network="denoiser", average="ema.module", every_n_steps=2)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                        callbacks=[callback, RNGState()],  # genlab fit's: noise resumes too
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=root)
    trainer.fit(model, ToyDataModule(train_size=128, val_size=32, batch_size=32),
                ckpt_path=ckpt_path)
    return trainer, callback


def test_resume_is_exact_and_genlab_ema_writes_a_sampling_checkpoint(tmp_path):
    whole, whole_cb = fit(tmp_path / "whole", 8)
    part, _ = fit(tmp_path / "part", 4)
    part.save_checkpoint(tmp_path / "part.ckpt")
    resumed, resumed_cb = fit(tmp_path / "part", 8, ckpt_path=tmp_path / "part.ckpt")
    assert resumed_cb.ema.step == whole_cb.ema.step == 8
    for a, b in zip(whole_cb.ema.averages, resumed_cb.ema.averages):
        assert all(torch.equal(a[k], b[k]) for k in a)
    snaps = sorted(p.name for p in (tmp_path / "part" / "posthoc_ema").glob("*.pt"))
    assert snaps == [f"{s:08d}.pt" for s in (2, 4, 6, 8)]
    last = torch.load(tmp_path / "part" / "posthoc_ema" / "00000008.pt", weights_only=True)
    assert last["network"] == "denoiser" and last["average"] == "ema.module"
    whole.save_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    out = tmp_path / "ema_0.1.ckpt"
    cli_main(["ema", "--run", str(tmp_path / "whole"), "--length", "0.1", "--out", str(out)])
    model = load_model(out)
    want, _ = reconstruct([torch.load(p, weights_only=True) for p in
                           sorted((tmp_path / "whole" / "posthoc_ema").glob("*.pt"))], 0.1)
    got = model.ema.module.state_dict()
    assert all(torch.allclose(got[k], v) for k, v in want.items())
    assert torch.isfinite(model.sample_eval(8)).all()
    with pytest.raises(SystemExit):  # one line on the console, exit status 2
        cli_main(["ema", "--run", str(tmp_path / "whole"), "--length", "0.5", "--out",
                  str(out)])
    with pytest.raises(GenlabError, match="no weights"):
        write_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt",
                         [{**last, "average": "nowhere"}], want, {}, tmp_path / "x.ckpt")


def test_a_wrong_network_path_is_one_line_and_a_missing_teacher_is_named(tmp_path):
    model = Diffusion(data_shape=[2], hidden=[16], emb_dim=8, num_timesteps=50, sample_steps=4,
                      trajectory_frames=0)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PostHocEMA(network="generator")], default_root_dir=tmp_path)
    with pytest.raises(GenlabError, match="PostHocEMA.network 'generator'") as err:
        trainer.fit(model, ToyDataModule(train_size=64, val_size=32, batch_size=32))
    assert "\n" not in str(err.value)
    # a student whose networks come from configure_model(): the missing teacher file is the
    # error, not a network path the callback looked up too early
    from genlab_cd import CD

    student = CD(teacher_ckpt=str(tmp_path / "missing.ckpt"))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PostHocEMA(network="student")], default_root_dir=tmp_path)
    with pytest.raises(GenlabError, match="missing.ckpt does not exist"):
        trainer.fit(student, ToyDataModule(train_size=64, val_size=32, batch_size=32))
