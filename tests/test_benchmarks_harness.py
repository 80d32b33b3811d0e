"""The benchmark harness: results table from JSON, --only parsing, the overhead parity loops."""

import argparse
import json

import pytest
import torch

from benchmarks.__main__ import parse_args
from benchmarks.common import load_span, point_options, read_config, write_result
from benchmarks.harness import (
    FAMILIES,
    argv_for,
    committed_rows,
    extract,
    parse_only,
    quick_plan,
)
from benchmarks.overhead import (
    compare,
    gan_model,
    gpt_model,
    max_loss_diff,
    plain_gan,
    plain_gpt,
    spread,
)

GAN_JSON = {
    "benchmark": "gan_modes", "command": "python -m benchmarks.gan_modes --data ring8",
    "date": "2026-01-02T03:04:05+00:00", "cpu": "Test CPU", "threads": 1,
    "data": {"ring8": {"runs": [{"seed": 0}, {"seed": 1}], "mean_modes": 7.5,
                       "mean_high_quality_pct": 91.25, "target": [8, 95.0],
                       "anchors": {"PacGAN4": [7.8, 95.9]}}},
}
VAE_JSON = {
    "preset": "cpu", "reduced": True, "command": "python -m benchmarks.vae_nll --epochs 1",
    "date": "2026-01-01", "hardware": {"cpu_count": 2, "machine": "x86_64", "cuda": None},
    "protocol": {"importance_samples": 10},
    "rows": [{"model": "VAE (ELBO)", "test_nll": 123.4, "test_examples": 20}],
}


def _write(path, data):
    path.write_text(json.dumps(data))


def test_rows_from_fake_json(tmp_path):
    _write(tmp_path / "gan_modes_ring8.json", GAN_JSON)
    _write(tmp_path / "vae_nll_cpu.json", VAE_JSON)
    _write(tmp_path / "unrelated.json", {"x": 1})  # not a benchmark's file: ignored
    rows = committed_rows(tmp_path)
    assert {r["family"] for r in rows} == {"gan", "vae"}
    gan = [r for r in rows if r["family"] == "gan"]
    assert [r["value"] for r in gan] == [7.5, 91.25]
    assert gan[0]["target"] == ">= 8" and "PacGAN4" in gan[0]["anchor"]
    assert gan[0]["hardware"].startswith("Test CPU") and gan[0]["date"].startswith("2026-01-02")
    vae = [r for r in rows if r["family"] == "vae"][0]
    assert vae["reduced"] and vae["target"] == ""  # the 86-nat target is the GPU preset's



def test_extract_survives_a_file_of_another_shape():
    rows = extract("gan_modes", {"data": {"ring8": {"oops": 1}}})
    assert len(rows) == 1 and rows[0]["value"] is None and "could not" in rows[0]["figure"]


def test_only_parsing():
    assert [f.name for f in parse_only(None)] == [f.name for f in FAMILIES if f.default]
    assert "classifier" not in [f.name for f in parse_only(None)]
    assert [f.name for f in parse_only("classifier")] == ["classifier"]
    assert [f.name for f in parse_only("vae, gan")] == ["gan", "vae"]  # harness order
    with pytest.raises(SystemExit, match="unknown family nope"):
        parse_only("gan,nope")
    args = parse_args(["run", "--preset", "gpu", "--only", "ar", "--smoke"])
    assert (args.preset, args.only, args.smoke) == ("gpu", "ar", True)


def test_load_span_and_write_result(tmp_path, capsys):
    span = load_span((1.234, 0.5, 0.0))
    assert span["before"] == [1.23, 0.5, 0.0] and len(span["after"]) == 3
    out = write_result({"load_average_1_5_15_min": span}, tmp_path / "sub" / "r.json")
    assert json.loads(out.read_text()) == {"load_average_1_5_15_min": span}
    assert out.read_text().endswith("}\n") and f"-> {out}" in capsys.readouterr().out


def test_read_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  class_path: a.B\n")
    assert read_config(path) == read_config(str(path)) == {"model": {"class_path": "a.B"}}
    path.write_text("")
    assert read_config(path) == {}  # an empty file reads as no settings, not None


def test_point_options_defaults():
    parser = point_options(argparse.ArgumentParser(), "x.json")
    args = parser.parse_args([])
    assert (args.max_steps, args.num, args.threads, args.out) == (None, 2500, 2, "x.json")


@pytest.fixture
def deterministic():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


def test_gan_parity_loop_matches_genlab(deterministic, tmp_path):
    device = torch.device("cpu")
    torch.manual_seed(0)
    model, trainer_args = gan_model(tiny=True, device=device)
    batches = [{"x": torch.rand(8, 1, 28, 28) * 2 - 1} for _ in range(4)]
    every_step = {**trainer_args, "log_every_n_steps": 1}  # compare all 4 steps' losses
    result = compare(model, batches, 1, device, plain_gan, ("train/loss_d", "train/loss_g"), 2,
                     every_step, repeats=1)
    assert result["max_loss_diff"] <= 1e-6 and result["max_loss_diff_bare"] <= 1e-6
    assert set(result["steps_per_s"]) == {"plain", "genlab", "genlab_bare"}


def test_gpt_parity_loop_matches_genlab(deterministic):
    device = torch.device("cpu")
    torch.manual_seed(0)
    model, trainer_args = gpt_model(tiny=True, total_steps=4)
    batches = [{"x": torch.randint(81, (4, 17))} for _ in range(4)]
    clip = trainer_args["gradient_clip_val"]
    result = compare(model, batches, 1, device,
                     lambda m, b, w, d: plain_gpt(m, b, w, d, clip), ("train/loss",), 1,
                     {**trainer_args, "log_every_n_steps": 1}, repeats=1)
    assert result["max_loss_diff"] <= 1e-6
    assert max_loss_diff([torch.ones(1)], [torch.ones(1), torch.ones(1)]) == float("inf")
    # Steps genlab did not log (None) are left out of the comparison.
    assert max_loss_diff([torch.ones(1), torch.zeros(1)], [torch.ones(1), None]) == 0.0


def test_gpu_quick_preset_is_registered_with_its_plan():
    quick = {f.name: f for f in parse_only(None, "gpu-quick")}
    assert list(quick) == ["ar", "overhead", "classifier", "gan_mnist", "diffusion_mnist"]
    assert sum(f.timeout_s for f in quick.values()) <= 8 * 60 - 60  # the kit's install: ~1 min
    ar = " ".join(argv_for(quick["ar"], "gpu-quick", smoke=False))
    assert "--preset gpu --steps 5000" in ar  # nanoGPT's config, the anchor's step count
    smoke = [" ".join(argv_for(f, "gpu-quick", smoke=True)) for f in quick.values()]
    assert all("cuda" not in a for a in smoke) and "--cpu-small" in smoke[3]
    assert parse_args(["run", "--preset", "gpu-quick", "--smoke"]).preset == "gpu-quick"
    with pytest.raises(SystemExit, match="unknown family gan;"):
        parse_only("gan", "gpu-quick")
    assert len(quick_plan()) == 5 and quick_plan()[0].startswith("ar")


def test_quick_figures_from_json():
    fid = {"model": "GAN", "max_steps": 6000, "num": 5000, "fid": 12.5, "sampling_steps": None,
           "train_seconds": 40.0, "evaluation": {"metrics": {"fid": 12.5, "fid_floor": 0.4}}}
    rows = extract("mnist_fid", fid)
    assert rows[0]["value"] == 12.5 and "floor 0.4" in rows[0]["anchor"]
    ar = extract("ar_shakespeare", {"preset": "gpu", "settings": {"steps": 5000},
                                    "result": {"val_loss": 1.4, "tokens_per_s": 1e6},
                                    "targets": {"val_loss": 1.388, "tokens_per_s": 1.36e6}})
    assert "1.388 at 5,000 steps" in ar[0]["anchor"] and "5,000 steps" in ar[0]["figure"]
    spread_ = spread([1.0, 0.9, 1.1, 0.95, 1.05])
    assert spread_["median"] == 1.0 and (spread_["min"], spread_["max"]) == (0.9, 1.1)
    over = {"targets": {"ratio": 0.97, "ratio_vs_bare": 0.99, "loss_diff": 1e-4},
            "models": {"GPT": {"ratio": 0.98, "ratio_spread": spread_, "ratio_vs_bare": 0.995,
                               "ratio_vs_bare_spread": spread_, "steps": 10,
                               "max_loss_diff": 0.0, "ratio_basis": "steps per wall-second"}}}
    figures = [r["figure"] for r in extract("overhead", over)]
    assert any("bare Lightning" in f and "median of 5, 0.9-1.1" in f for f in figures)


def test_distill_mnist_verdict_takes_the_better_method_and_reads_into_rows(tmp_path):
    from benchmarks.add_mnist import output_path, previous_report, verdict
    from benchmarks.add_mnist import parse_args as distill_args

    args = distill_args(["--cpu"])
    assert (args.methods, args.threads, args.fid_num, args.batch_size) == (["cd", "add"], 1,
                                                                           2000, 64)
    # the GPU preset compares both students of one teacher too; one method names its file
    names = {tuple(argv): output_path(distill_args(argv)).name for argv in
             ([], ["--cpu"], ["--cpu-small"], ["--methods", "cd"], ["--cpu-small", "--methods",
                                                                    "cd,add"])}
    assert names == {(): "distill_mnist.json", ("--cpu",): "distill_mnist_cpu.json",
                     ("--cpu-small",): "add_mnist_cpu_small.json",
                     ("--methods", "cd"): "cd_mnist.json",
                     ("--cpu-small", "--methods", "cd,add"): "distill_mnist_cpu_small.json"}
    with pytest.raises(SystemExit):  # an unknown method is refused before any training
        distill_args(["--methods", "cd,bogus"])
    report = {"fid_num": 1000, "training": {
        "cd": {"train_steps": 10, "train_cpu_seconds": 5.0, "train_wall_seconds": 9.0},
        "add": {"train_steps": 20, "train_cpu_seconds": 6.0, "train_wall_seconds": 8.0}},
        "results": {"teacher_ddim_50": {"fid": 20.0, "samples_per_second": 2.0}}}
    for method, fids in (("cd", (40.0, 30.0, 22.0)), ("add", (28.0, 35.0, 21.0))):
        for steps, value in zip((1, 2, 4), fids):
            report["results"][f"{method}_{steps}_step"] = {"fid": value,
                                                           "samples_per_second": 100 / steps}
    verdict(report)
    assert report["best_1_step"] == "add" and report["fid_ratio_1_step"] == 1.4
    assert report["fid_ratio_4_step"] == 1.05 and report["speedup_1_step"] == 50.0
    assert report["target_met"] is True and report["fid_ratio"]["cd_1_step"] == 2.0
    rows = extract("distill_mnist", report)
    assert rows[-1]["value"] == 1.4 and rows[-1]["target"] == "<= 1.5"
    assert "28.00 / 100.0" in [r["value"] for r in rows]  # add_1_step: FID / samples/s
    # --merge keeps a file only when it was measured with the same teacher.
    out = tmp_path / "distill.json"
    out.write_text(json.dumps({**report, "teacher": {"train_steps": 7000}}))
    merge = distill_args(["--cpu", "--merge"])
    assert previous_report(merge, out, {"teacher": {"train_steps": 7000}})["fid_num"] == 1000
    with pytest.raises(SystemExit, match="another teacher"):
        previous_report(merge, out, {"teacher": {"train_steps": 10}})
