"""Bad input, one case a row: each is one clear line on stderr, exit code 2, no traceback."""

import pytest
import torch
import yaml

from genlab.cli import main
from genlab.data.tiny import write_parquet, write_text
from tests.test_cli import TINY


def config(tmp_path, **changes):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"].update(logger=False, max_steps=2)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def fit(tmp_path, *extra, **changes):
    return ["fit", "--config", config(tmp_path, **changes), "--run.root", str(tmp_path / "r"),
            *extra]


def trained(tmp_path):
    (tmp_path / "ok").mkdir(exist_ok=True)
    main(fit(tmp_path / "ok"))
    return str(next((tmp_path / "ok/r").rglob("last.ckpt")))


def corrupt(tmp_path):
    path = tmp_path / "corrupt.ckpt"
    path.write_bytes(open(trained(tmp_path), "rb").read()[:3000])
    return str(path)


def pickled(tmp_path):
    ckpt = torch.load(trained(tmp_path), weights_only=True)
    ckpt["extra"] = torch.optim.SGD
    torch.save(ckpt, tmp_path / "pickled.ckpt")
    return str(tmp_path / "pickled.ckpt")


def other_plugin(tmp_path):
    ckpt = torch.load(trained(tmp_path), weights_only=True)
    ckpt["hyper_parameters"]["_class_path"] = "genlab_vae.VAE"
    ckpt["genlab"]["class_path"] = "genlab_vae.VAE"
    torch.save(ckpt, tmp_path / "vae.ckpt")
    return str(tmp_path / "vae.ckpt")


def unscheduled(tmp_path):
    """A constant-rate run's checkpoint from before ``lr_schedule`` existed: a resume takes that
    option from the config, which adds two schedulers."""
    ckpt = torch.load(trained(tmp_path), weights_only=True)
    del ckpt["hyper_parameters"]["lr_schedule"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    return str(tmp_path / "old.ckpt")


def other_scheduler(tmp_path):
    """A cosine run's checkpoint whose schedulers claim another kind (a ``LambdaLR``'s state)."""
    (tmp_path / "cos").mkdir(exist_ok=True)
    main(fit(tmp_path / "cos", "--model.init_args.lr_schedule", "cosine"))
    ckpt = torch.load(next((tmp_path / "cos/r").rglob("last.ckpt")), weights_only=True)
    ckpt["lr_schedulers"] = [{"base_lrs": s["base_lrs"], "last_epoch": s["last_epoch"],
                              "lr_lambdas": [None]} for s in ckpt["lr_schedulers"]]
    torch.save(ckpt, tmp_path / "lambda.ckpt")
    return str(tmp_path / "lambda.ckpt")


def yaml_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  class_path: GAN\n  init_args: [unclosed\n")
    return ["fit", "--config", str(path)]


def parquet(tmp_path):
    return str(write_parquet(tmp_path / "digits", {"train": 16}))


def broken_parquet(tmp_path):
    """A parquet file cut short, as an interrupted download leaves it."""
    whole = write_parquet(tmp_path / "whole", {"train": 16}) / "train.parquet"
    path = tmp_path / "broken.parquet"
    path.write_bytes(whole.read_bytes()[:300])
    return str(path)


def unwritable_root(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    return str(tmp_path / "a_file" / "runs")


IMAGE_DATA = {"class_path": "ImageDataModule",
              "init_args": {"image_size": 28, "channels": 1, "batch_size": 4, "num_workers": 0}}


def image_fit(tmp_path, model_args=None, **data_args):
    data = yaml.safe_load(yaml.safe_dump(IMAGE_DATA))
    data["init_args"].update({"source": parquet(tmp_path), **data_args})
    model = {"class_path": "GAN", "init_args": {"image_size": 28, "channels": 1, "width": 8,
                                                **(model_args or {})}}
    return fit(tmp_path, **{"data": data, "model": model})


CASES = [
    ("unknown plugin", lambda t: fit(t, **{"model.class_path": "NoSuchModel"}), "NoSuchModel"),
    ("unknown data module", lambda t: fit(t, **{"data.class_path": "NoSuchData"}),
     "NoSuchData"),
    ("YAML syntax error", yaml_error, "line"),
    ("wrong argument type", lambda t: fit(t, "--trainer.max_steps", "many"), "max_steps"),
    ("unknown option", lambda t: fit(t, "--trainer.no_such_option", "1"), "no_such_option"),
    ("missing config file", lambda t: ["fit", "--config", str(t / "none.yaml")], "none.yaml"),
    ("negative batch size", lambda t: fit(t, **{"data.init_args.batch_size": -4}),
     "batch_size"),
    ("zero train size", lambda t: fit(t, **{"data.init_args.train_size": 0}), "train_size"),
    ("negative penalty weight", lambda t: fit(t, **{"model.init_args.r1_gamma": -1.0}),
     "r1_gamma"),
    ("missing data path", lambda t: image_fit(t) and fit(t, **{"data": {
        "class_path": "ImageDataModule", "init_args": {"source": str(t / "nowhere")}}}),
     "no such file"),
    ("column that is not there", lambda t: image_fit(t, image_column="pixels"), "image"),
    ("image channels", lambda t: image_fit(t, channels=2), "channels"),
    ("image size the network cannot take", lambda t: image_fit(t, {"image_size": 30},
                                                               image_size=30), "30"),
    ("data and model shapes differ", lambda t: image_fit(t, image_size=32), "(1, 28, 28)"),
    ("text shorter than a block", lambda t: fit(t, **{"data": {
        "class_path": "TextDataModule",
        "init_args": {"source": str(write_text(t / "a.txt", "ab\n")), "block_size": 64}}}),
     "block_size"),
    ("corrupted checkpoint to resume", lambda t: fit(t, "--ckpt_path", corrupt(t)),
     "not a valid checkpoint"),
    ("checkpoint needing unpickling", lambda t: fit(t, "--ckpt_path", pickled(t)),
     "trust"),
    ("checkpoint from another plugin", lambda t: fit(t, "--ckpt_path", other_plugin(t)),
     "VAE"),
    ("resume adding a learning-rate schedule", lambda t: fit(
        t, "--ckpt_path", unscheduled(t), "--model.init_args.lr_schedule", "cosine"),
     "another learning-rate schedule (0 scheduler(s) saved, the config makes 2"),
    ("resume with another kind of scheduler",
     lambda t: fit(t, "--ckpt_path", other_scheduler(t)),
     "another learning-rate schedule"),
    ("resume with no earlier run", lambda t: fit(t, "--ckpt_path", "last"), "no run under"),
    ("more devices than exist", lambda t: fit(t, "--trainer.accelerator", "gpu"), "gpu"),
    ("more CPU processes than the machine holds",
     lambda t: fit(t, "--trainer.devices", "64", "--trainer.strategy", "ddp"), "holds at most"),
    ("corrupt data file", lambda t: image_fit(t, source=broken_parquet(t)),
     "broken.parquet' is not readable parquet data"),
    ("learning rate the optimizer rejects", lambda t: fit(t, "--model.init_args.lr_g", "-1"),
     "Invalid learning rate: -1"),
    ("run root that cannot be created", lambda t: fit(t, "--run.root", unwritable_root(t)),
     "a_file/runs: cannot create"),
    ("sample: missing checkpoint", lambda t: ["sample", "--ckpt", str(t / "x.ckpt")],
     "does not exist"),
    ("sample: option the family lacks",
     lambda t: ["sample", "--ckpt", trained(t), "--top_p", "0.9"], "--top_p"),
    ("evaluate: unknown split", lambda t: ["evaluate", "--ckpt", trained(t), "--split", "dev"],
     "--split"),
    ("new-plugin: bad name", lambda t: ["new-plugin", "My-Flow", "--dir", str(t / "p")],
     "identifier"),
]


def test_the_table_is_at_least_twenty_rows():
    print(f"bad-input table: {len(CASES)} cases")
    assert len(CASES) >= 20


@pytest.mark.parametrize("argv, expected", [(c[1], c[2]) for c in CASES],
                         ids=[f"{i:02d}-{c[0].replace(' ', '-')}" for i, c in enumerate(CASES, 1)])
def test_bad_input_is_one_line(argv, expected, tmp_path, capsys):
    args = argv(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error:") and expected in last, last


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENLAB_DEBUG", "1")
    with pytest.raises(SystemExit):
        main(fit(tmp_path, "--model.init_args.lr_g", "-1"))
    err = capsys.readouterr().err.strip()
    assert "Traceback" in err and "torch/optim" in err
    assert err.splitlines()[-1].startswith("error: the optimizer rejects a hyperparameter")
