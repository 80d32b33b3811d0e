"""The two-stage benchmarks' own pieces: the CPU presets match their configs, the CPU budget,
the label agreement of class-conditional samples."""

import time
from types import SimpleNamespace

import torch

from benchmarks.common import ROOT, read_config
from benchmarks.pixel_gpt_mnist import CPUBudget, binarized, two_stage_fid
from benchmarks.twostage_cond_mnist import PRESET as COND_PRESET
from benchmarks.twostage_cond_mnist import agreement, class_rows
from benchmarks.twostage_mnist import PRESETS


def test_cpu_preset_is_the_config_s_vq_vae():
    config = read_config(ROOT / "configs/vqgan/mnist_cpu.yaml")
    args = config["model"]["init_args"]
    preset = PRESETS["cpu"]
    for key, value in preset["vq"].items():
        assert args[key] == (list(value) if isinstance(value, tuple) else value), key
    assert config["trainer"]["max_steps"] == preset["vq_batches"]
    assert config["data"]["init_args"]["batch_size"] == preset["batch_size"]


def test_cpu_budget_stops_training_once_spent():
    trainer = SimpleNamespace(should_stop=False)
    budget = CPUBudget(0.05)
    budget.on_train_start(trainer, None)
    budget.on_train_batch_end(trainer)
    assert not trainer.should_stop
    start = time.process_time()
    while time.process_time() - start < 0.06:  # burn CPU, not wall time
        sum(range(1000))
    budget.on_train_batch_end(trainer)
    assert trainer.should_stop


def test_binarized_test_images_are_bernoulli_in_minus_one_one():
    x = torch.tensor([[-1.0, 1.0, 0.0]]).expand(4000, 3)
    out = binarized([x[:2000], x[2000:]])
    assert out.shape == (4000, 3) and set(out.unique().tolist()) <= {-1.0, 1.0}
    assert (out[:, 0] == -1).all() and (out[:, 1] == 1).all()
    assert abs(float((out[:, 2] == 1).float().mean()) - 0.5) < 0.05  # p = intensity = 0.5


def test_two_stage_fid_at_the_pixel_gpt_s_count_or_the_nearest():
    two = {"fid": 10.0, "fid_2000": 12.0, "num": 10_000}
    assert two_stage_fid(two, 2000) == (12.0, 2000)
    assert two_stage_fid(two, 10_000) == (10.0, 10_000)
    assert two_stage_fid(two, 500) == (12.0, 2000)  # nearest; the result records 2000
    assert two_stage_fid({"fid": 30.0, "num": 500}, 500) == (30.0, 500)


def test_conditional_cpu_preset_is_the_config_s_prior():
    config = read_config(ROOT / "configs/twostage/mnist_cond_cpu.yaml")
    assert config["model"]["init_args"]["prior_args"] == COND_PRESET["prior"]
    assert config["trainer"]["max_steps"] == COND_PRESET["prior_batches"]
    assert config["data"]["init_args"]["batch_size"] == COND_PRESET["batch_size"]


class _Says(torch.nn.Module):
    """A "classifier" that says the class written in each image's first pixel."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float()


def test_label_agreement_overall_and_per_class():
    labels = torch.arange(10).repeat_interleave(2)
    said = labels.clone()
    said[0] = 5  # one of the two zeros is taken for a five
    fake = said.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    out = agreement(_Says(), fake, labels)
    assert out["label_agreement"] == 0.95
    assert out["agreement_per_class"] == [0.5] + [1.0] * 9


def test_class_rows_take_the_first_of_each_class_in_order():
    fake = torch.arange(10).repeat_interleave(3).float().view(-1, 1, 1, 1)
    rows = class_rows(fake, per_class=3, nrow=2)
    assert rows.flatten().tolist() == [c for c in range(10) for _ in range(2)]


def test_latent_diffusion_recipes_are_the_configs_less_the_label():
    from benchmarks.latent_diffusion_mnist import PRESETS as LATENT
    from benchmarks.latent_diffusion_mnist import pixel_args, prior_args

    cpu = {**LATENT["cpu"], "steps": 7}
    pixel = read_config(ROOT / "configs/diffusion/mnist_cpu.yaml")
    expected = {**pixel["model"]["init_args"], "ema_decay": 0.995, "sample_steps": 7}
    assert pixel_args(cpu) == expected  # the config's recipe; EMA sized to a short run
    cond = read_config(ROOT / "configs/twostage/mnist_cond_cpu.yaml")
    prior = cond["model"]["init_args"]["prior_args"]
    unconditional = {k: v for k, v in prior.items()
                     if k not in ("num_classes", "label_dropout", "guidance")}
    assert prior_args(cpu) == {**unconditional, "channels": 32, "sample_steps": 7}
    latent = read_config(ROOT / "configs/twostage/mnist_latent_cpu.yaml")
    assert latent["model"]["init_args"]["prior_args"] == {**prior_args(cpu), "sample_steps": 25}
    assert latent["trainer"]["max_steps"] == LATENT["cpu"]["prior_batches"]
    assert latent["data"]["init_args"]["batch_size"] == LATENT["cpu"]["batch_size"]
    assert "num_classes" not in LATENT["gpu"]["prior"] and LATENT["gpu"]["device"] == "cuda"


def test_latent_diffusion_budget_clock_and_reduced_runs():
    from benchmarks.latent_diffusion_mnist import budget_clock, parse_args, settings

    assert budget_clock("cpu") == ("train_cpu_seconds", time.process_time)
    assert budget_clock("cuda") == ("train_seconds", time.perf_counter)
    assert not settings(parse_args([]))["reduced"]
    reduced = settings(parse_args(["--num", "100", "--steps", "5"]))
    assert reduced["reduced"] and (reduced["num"], reduced["steps"]) == (100, 5)


def test_latent_diffusion_figures_judge_the_speed_up_on_the_budget_s_clock():
    from benchmarks.harness import extract

    row = {"train_batches": 700, "fid": 40.0, "cpu_ms_per_image": 80.0, "ms_per_image": 90.0,
           "budget_clock": "train_cpu_seconds"}
    d = {"rows": [{"recon_accuracy": 0.98, "real_accuracy": 0.99},
                  {"fid": 20.0, "cpu_ms_per_image": 10.0, "ms_per_image": 30.0}, row],
         "protocol": {"fid_samples": 2000}, "budget_seconds": 210.5, "settings": {"steps": 25},
         "sampling_speedup_cpu": 8.0, "sampling_speedup_wall": 3.0,
         "target": {"sampling_speedup": ">= 4.0 (CPU ms per image; wall on a GPU)"}}
    fid, speed = extract("latent_diffusion_mnist", d)[1:]
    assert fid["value"] == 20.0 and "210.5 CPU-s" in fid["figure"] and "40.0" in fid["anchor"]
    assert speed["value"] == 8.0 and speed["target"] == ">= 4.0"
    row["budget_clock"] = "train_seconds"  # a GPU's run: wall time
    assert extract("latent_diffusion_mnist", d)[2]["value"] == 3.0
