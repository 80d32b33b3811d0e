"""Modalities are plugins: the core's register by entry point, a third party's works the same."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from genlab import GenerativeModule, registry
from genlab.callbacks.samples import SampleLogger
from genlab.errors import GenlabError
from genlab.modality import Modality, get_modality, modality_names

WAVE = """
    from PIL import Image
    from genlab.modality import Modality

    class Wave(Modality):
        picture_num = 3

        def render(self, samples, real=None, decode=None, title=""):
            return Image.new("RGB", (8, 8))
"""


@pytest.fixture
def fresh_modalities():
    get_modality.cache_clear()
    yield
    get_modality.cache_clear()


def test_core_modalities_register_through_genlabs_own_entry_points():
    found = {p.name: p for p in registry.plugins(registry.MODALITY_GROUP)}
    assert {"image", "points", "tokens"} <= set(found)
    for name in ("image", "points", "tokens"):
        assert found[name].package == "genlab" and found[name].status == "ok"
        assert isinstance(get_modality(name), Modality)


def test_unknown_modality_fails_at_class_creation():
    with pytest.raises(TypeError, match="modality is 'wave'.*registered in 'genlab.modalities'"):
        type("Bad", (GenerativeModule,), {"modality": "wave"})
    with pytest.raises(GenlabError, match="no modality named 'wave'; registered: image"):
        get_modality("wave")


def test_third_party_modality_is_used_by_the_sample_logger(fake_dist, fresh_modalities, tmp_path):
    fake_dist("genlab-wave", {"genlab.modalities": {"wave": "wave_pkg:Wave"}}, {"wave_pkg": WAVE})
    assert "wave" in modality_names()

    class Waves(GenerativeModule):
        modality = "wave"

        def sample(self, num):
            return torch.zeros(num, 4)

    logger = SampleLogger()
    model = Waves()
    assert logger._num(model) == 3  # the modality's picture_num
    trainer = type("T", (), {"is_global_zero": True, "global_step": 5, "loggers": [],
                             "default_root_dir": str(tmp_path), "datamodule": None,
                             "fit_loop": type("F", (), {"epoch_loop": type(
                                 "E", (), {"_batches_that_stepped": 5})()})()})()
    path = logger.log_samples(trainer, model)
    assert path == Path(tmp_path) / "samples/step_0000005.png"
    assert Image.open(path).size == (8, 8)


def test_a_modality_entry_point_must_be_a_modality(fake_dist, fresh_modalities):
    fake_dist("genlab-notone", {"genlab.modalities": {"notone": "notone_pkg:Thing"}},
              {"notone_pkg": "class Thing:\n    pass\n"})
    with pytest.raises(GenlabError, match="not a genlab.modality.Modality subclass"):
        get_modality("notone")


class Either(GenerativeModule):
    modalities = ("points", "image")

    def __init__(self, image: bool = False) -> None:
        super().__init__()
        self.image = image

    @property
    def modality(self) -> str:
        return "image" if self.image else "points"


def test_data_dependent_modality_is_declared_and_checked():
    assert Either(image=True).modality == "image"
    Either().validate_modality()
    with pytest.raises(TypeError, match="list every modality it can take in the class attribute"):
        type("NoList", (GenerativeModule,), {"modality": property(lambda self: "points")})
    with pytest.raises(TypeError, match="modalities holds 'audio'"):
        type("Unknown", (GenerativeModule,), {"modality": property(lambda self: "audio"),
                                              "modalities": ("points", "audio")})
    narrow = type("Narrow", (Either,), {"modalities": ("points",)})
    with pytest.raises(TypeError, match="Narrow.modality is 'image'.*declared by the class"):
        narrow(image=True).validate_modality()


def test_in_tree_plugins_cannot_reassign_modality_per_instance():
    gan = registry.create_model("gan", hidden=[8], latent_dim=2)
    with pytest.raises(AttributeError):
        gan.modality = "image"
    for plugin in registry.plugins():
        cls = plugin.cls
        declared = cls.modalities if isinstance(cls.modality, property) else (cls.modality,)
        assert set(declared) <= set(modality_names()), plugin.name


def test_core_dispatch_has_no_modality_branches():
    core = Path(registry.__file__).parent
    for name in ("sampling.py", "evaluation.py", "visualize.py", "testing.py",
                 "callbacks/samples.py"):
        text = (core / name).read_text()
        for branch in ('modality ==', '"image"', '"points"', '"tokens"'):
            assert branch not in text, f"{name} has {branch}"
