"""ADD passes the conformance kit, 2-process CPU DDP included, from a tiny diffusion teacher."""

import lightning as L
from genlab_diffusion import Diffusion

from genlab.data.toy import ToyDataModule
from genlab.testing import check_plugin


def test_add_conformance_with_ddp(tmp_path):
    data = ToyDataModule(train_size=128, val_size=32, batch_size=32)
    L.seed_everything(0, verbose=False)
    teacher = Diffusion(data_shape=[2], hidden=[16], emb_dim=8, num_timesteps=50,
                        sample_steps=4, trajectory_frames=0)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(teacher, data)
    trainer.save_checkpoint(tmp_path / "teacher.ckpt")
    check_plugin("add", data, tmp_path / "kit", ddp=True, init_args={
        "teacher_ckpt": str(tmp_path / "teacher.ckpt"), "head_width": 8, "lr": 1e-3,
        "lr_disc": 1e-3, "r1_gamma": 0.1})
