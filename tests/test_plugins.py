"""Every registered model plugin passes the conformance kit on its own tiny case.

As timm's tests/test_models.py runs over every registered model: the plugins are found through
the ``genlab.models`` entry points (in-tree and installed examples alike), each declares its case
(``GenerativeModule.conformance_case``), and a new plugin is covered the day it is registered.
"""

import pytest

from genlab.registry import MODEL_GROUP, plugins
from genlab.testing import check_case

PLUGINS = [p.name for p in plugins(MODEL_GROUP, load=False)]


def test_the_in_tree_plugins_are_found():
    assert {"gan", "vae", "ar", "diffusion", "add", "vaegan", "vqgan", "twostage",
            "pix2pix"} <= set(PLUGINS)


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_conforms(name, tmp_path):
    check_case(name, tmp_path)
