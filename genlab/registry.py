"""Plugin discovery through ``importlib.metadata`` entry points.

Model families register under the group ``genlab.models``, data modules under ``genlab.data`` and
modalities (how samples are shown, saved and scored) under ``genlab.modalities``.
Entry points are read once and loaded lazily; a plugin that fails to import is recorded with its
error instead of breaking the others.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from genlab.errors import GenlabError

MODEL_GROUP = "genlab.models"
DATA_GROUP = "genlab.data"
MODALITY_GROUP = "genlab.modalities"
GROUPS = (MODEL_GROUP, DATA_GROUP)


@dataclass
class Plugin:
    """One registered entry point: where it comes from and, once loaded, its class or error."""

    name: str
    group: str
    target: str
    package: str
    version: str
    cls: type | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        """``"ok"``, ``"error: ..."``, or ``"not loaded"``."""
        if self.error is not None:
            return f"error: {self.error}"
        return "ok" if self.cls is not None else "not loaded"

    @property
    def module(self) -> str:
        """The module named by the entry point's target (``package.module:Class``)."""
        return self.target.split(":", 1)[0]

    def module_found(self) -> bool:
        """Whether the plugin's module can be found, importing neither it nor its packages.

        ``find_spec("pkg.mod")`` would import ``pkg`` (and so torch, Lightning, ...): only the
        top-level package is looked up that way, the rest in its folders (editable installs too).
        """
        top, *rest = self.module.split(".")
        try:
            spec = importlib.util.find_spec(top)
            for depth in range(1, len(rest) + 1):
                if spec is None or spec.submodule_search_locations is None:
                    return False
                name = ".".join([top, *rest[:depth]])
                spec = importlib.machinery.PathFinder.find_spec(
                    name, list(spec.submodule_search_locations))
        except (ImportError, ValueError):
            return False
        return spec is not None


def _distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"], dist.version


@functools.cache
def _discover(group: str) -> dict[str, Plugin]:
    """Read (without importing) every entry point of ``group``; duplicate names are an error."""
    found: dict[str, Plugin] = {}
    for ep in entry_points(group=group):
        package, version = _distribution(ep)
        plugin = Plugin(ep.name, group, ep.value, package, version)
        if ep.name in found and found[ep.name].target != ep.value:
            other = found[ep.name]
            raise GenlabError(
                f"two plugins claim the name {ep.name!r} in {group!r}: {other.package} "
                f"({other.target}) and {package} ({ep.value}); uninstall one of them"
            )
        found[ep.name] = plugin
    return found


def _load(plugin: Plugin) -> Plugin:
    if plugin.cls is not None or plugin.error is not None:
        return plugin
    try:
        plugin.cls = EntryPoint(plugin.name, plugin.target, plugin.group).load()
    except Exception as err:  # a broken plugin must not take the others down
        plugin.error = f"{type(err).__name__}: {err}"
        warnings.warn(
            f"genlab plugin {plugin.name!r} from package {plugin.package} failed to load "
            f"({plugin.error}); the other plugins are unaffected",
            RuntimeWarning,
            stacklevel=2,
        )
    return plugin


def plugins(group: str = MODEL_GROUP, load: bool = True) -> list[Plugin]:
    """Every plugin registered in ``group``, sorted by name, imported when ``load`` is true."""
    found = sorted(_discover(group).values(), key=lambda p: p.name)
    return [_load(p) for p in found] if load else found


def load_plugins() -> None:
    """Import every model and data plugin so LightningCLI can resolve their short class names."""
    for group in GROUPS:
        plugins(group)


def list_models() -> list[str]:
    """Names of the model plugins that loaded successfully."""
    return [p.name for p in plugins(MODEL_GROUP) if p.cls is not None]


def get_model_class(name: str, group: str = MODEL_GROUP) -> type:
    """The class registered as ``name`` (entry-point name or class name) in ``group``."""
    for plugin in plugins(group):
        if name in (plugin.name, plugin.target.rsplit(":", 1)[-1]):
            if plugin.cls is None:
                raise GenlabError(
                    f"plugin {name!r} from package {plugin.package} is installed but failed to "
                    f"load: {plugin.error}"
                )
            return plugin.cls
    known = ", ".join(p.name for p in plugins(group)) or "none"
    raise GenlabError(
        f"no plugin named {name!r} in {group!r}; registered: {known} "
        f"(run `genlab list`, or install the package that provides it)"
    )


def create_model(name: str, **overrides: Any) -> Any:
    """Build the model plugin ``name`` with its defaults, replaced by ``overrides``."""
    return get_model_class(name)(**overrides)


def origin(cls: type) -> dict[str, str]:
    """Plain-typed record of the plugin that provides ``cls`` (name, package, version)."""
    for plugin in plugins(MODEL_GROUP):
        if plugin.cls is cls:
            return {"plugin": plugin.name, "package": plugin.package, "version": plugin.version}
    return {"plugin": cls.__name__, "package": cls.__module__.split(".")[0], "version": "?"}


def refresh() -> None:
    """Forget discovered entry points, e.g. after installing a package in the same process."""
    _discover.cache_clear()
