"""Checkpoints are complete or absent, even when the process dies while writing one."""

import lightning as L
import pytest
import torch

from genlab.checkpoint import AtomicCheckpointIO


def test_a_save_that_dies_midway_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def dies_midway(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # stands in for SIGKILL during the write

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    io.save_checkpoint({"step": 3}, path)
    assert torch.load(path, weights_only=True)["step"] == 3


def _fit(root, steps, *extra):
    import yaml

    from genlab.cli import main
    from tests.test_cli import TINY

    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"].update(logger=False, max_steps=steps, limit_val_batches=0)
    cfg["samples"]["every_n_steps"] = 0
    root.mkdir(parents=True, exist_ok=True)
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(root / "tiny.yaml"), "--run.root", str(root / "runs"), *extra])
    return torch.load(next((root / "runs").rglob("last.ckpt")), weights_only=True)


@pytest.mark.parametrize("stop_at", [10, 16])  # mid-epoch, and on an epoch boundary
def test_stopped_and_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, stop_at):
    whole = _fit(tmp_path / "whole", 24)
    _fit(tmp_path / "parts", stop_at)
    resumed = _fit(tmp_path / "parts", 24, "--ckpt_path", "last")
    assert resumed["global_step"] == whole["global_step"] == 24
    for key, value in whole["state_dict"].items():  # both networks, EMA, counters
        assert torch.equal(value, resumed["state_dict"][key]), key
    for got, want in zip(resumed["optimizer_states"], whole["optimizer_states"]):
        for param, state in want["state"].items():
            for name, tensor in state.items():
                assert torch.equal(tensor, got["state"][param][name]), (param, name)


class SaveAtEnd(L.Callback):
    """Save a checkpoint inside the (spawned) DDP processes, where the loops' state lives."""

    def __init__(self, path):
        self.path = path

    def on_train_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path)


def test_ddp_run_resumed_mid_epoch_is_bitwise_the_uninterrupted_one(tmp_path):
    # Lightning used to wrap genlab's sampler in one of its own, which failed (IndexError) on
    # a mid-epoch resume under DDP; each rank now skips exactly the examples it served.
    from lightning.pytorch.strategies import DDPStrategy

    from genlab.callbacks.rng import RNGState
    from genlab.data.toy import ToyDataModule
    from genlab.testing import _seeded_fit, resolve

    gan, args = resolve("gan"), {"hidden": [16], "latent_dim": 2}
    data = ToyDataModule(train_size=256, val_size=32, batch_size=32)  # 4 batches a rank

    def fit(name, steps, ckpt=None, *callbacks):
        strategy = DDPStrategy(process_group_backend="gloo", start_method="spawn")
        return _seeded_fit(gan, args, data, tmp_path / name, steps, ckpt_path=ckpt,
                           devices=2, strategy=strategy, callbacks=[RNGState(), *callbacks],
                           limit_val_batches=0)

    whole = fit("whole", 12)  # 6 batches: one epoch and a half
    # stopped after 3 of the first epoch's 4 batches
    fit("part", 6, None, SaveAtEnd(tmp_path / "part.ckpt"))
    resumed = fit("resumed", 12, tmp_path / "part.ckpt")
    for key, value in whole.lightning_module.state_dict().items():
        assert torch.equal(value, resumed.lightning_module.state_dict()[key]), key


def test_a_models_setup_closes_the_process_group_at_exit(tmp_path):
    """Lightning destroys only NCCL groups at exit; a gloo group left to interpreter shutdown
    aborts a DDP process now and then (SIGABRT), so every model's setup arranges the teardown."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import atexit, torch.distributed as dist
        from genlab.module import GenerativeModule
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}",
                                rank=0, world_size=1)
        GenerativeModule().setup("fit")
        atexit._run_exitfuncs()
        print("still initialized" if dist.is_initialized() else "destroyed")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "destroyed", done.stderr[-2000:]
