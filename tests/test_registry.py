import warnings

import pytest

from genlab import registry
from genlab.errors import GenlabError
from tests.conftest import TINY_MODEL


def test_in_tree_plugin_found_through_entry_point():
    names = registry.list_models()
    assert "gan" in names
    gan = registry.get_model_class("gan")
    assert gan.__name__ == "GAN" and gan.__module__.startswith("genlab_gan")
    assert registry.get_model_class("GAN") is gan


def test_third_party_distribution_is_discovered(fake_dist):
    fake_dist("genlab-fakefam", {"genlab.models": {"fakefam": "fakefam_pkg:Fake"}},
              {"fakefam_pkg": TINY_MODEL.format(cls="Fake")})
    assert "fakefam" in registry.list_models()
    plugin = next(p for p in registry.plugins() if p.name == "fakefam")
    assert (plugin.package, plugin.version, plugin.status) == ("genlab-fakefam", "0.3", "ok")
    model = registry.create_model("fakefam", width=3)
    assert model.sample(5).shape == (5, 2)


def test_broken_plugin_is_isolated(fake_dist):
    fake_dist("genlab-broken", {"genlab.models": {"broken": "broken_pkg:Model"}},
              {"broken_pkg": "raise ImportError('needs libfoo')\n"})
    with pytest.warns(RuntimeWarning, match="broken.*genlab-broken.*needs libfoo"):
        names = registry.list_models()
    assert "broken" not in names and "gan" in names
    plugin = next(p for p in registry.plugins() if p.name == "broken")
    assert plugin.status == "error: ImportError: needs libfoo"
    with pytest.raises(GenlabError, match="genlab-broken.*failed to load"):
        registry.get_model_class("broken")


def test_duplicate_names_name_both_packages(fake_dist):
    fake_dist("genlab-one", {"genlab.models": {"dup": "one_pkg:A"}},
              {"one_pkg": TINY_MODEL.format(cls="A")})
    fake_dist("genlab-two", {"genlab.models": {"dup": "two_pkg:B"}},
              {"two_pkg": TINY_MODEL.format(cls="B")})
    with pytest.raises(GenlabError, match=r"'dup'.*genlab-(one|two).*genlab-(two|one)"):
        registry.list_models()


def test_unknown_model_lists_registered():
    with pytest.raises(GenlabError, match=r"no plugin named 'nope'.*registered: .*gan"):
        registry.create_model("nope")


def test_importing_genlab_loads_no_plugin_and_no_lightning():
    import subprocess
    import sys

    code = ("import sys, genlab; genlab.__version__; "
            "print(any(m.startswith(('genlab_', 'lightning')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_warning_when_all_plugins_load():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        registry.load_plugins()


def test_list_imports_no_plugin_even_with_a_dotted_entry_point(fake_dist):
    import subprocess
    import sys

    site = fake_dist("genlab-dotted", {"genlab.models": {"dotted": "dotted_pkg.model:Flow",
                                                         "gone": "dotted_pkg.missing:Flow"}}, {})
    (site / "dotted_pkg").mkdir()
    (site / "dotted_pkg/__init__.py").write_text("import torch\n")
    (site / "dotted_pkg/model.py").write_text(TINY_MODEL.format(cls="Flow"))
    code = ("import sys; from genlab.cli import main; main(['list']); "
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'dotted_pkg', "
            "'lightning'))))")
    env = {**__import__("os").environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    *table, imported = out.stdout.strip().splitlines()
    assert imported == "[]"
    rows = {line.split()[1]: line for line in table if "dotted" in line or "gone" in line}
    assert "installed" in rows["dotted"]
    assert "module dotted_pkg.missing not found" in rows["gone"]
