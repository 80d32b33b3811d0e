"""genlab: generative models on PyTorch Lightning, with model families as plugins.

``import genlab`` stays cheap: Lightning and the plugins are imported on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConformanceCase": "genlab.module",
    "GenerativeModule": "genlab.module",
    "GenlabError": "genlab.errors",
    "Modality": "genlab.modality",
    "create_model": "genlab.registry",
    "list_models": "genlab.registry",
    "load_plugins": "genlab.registry",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")
