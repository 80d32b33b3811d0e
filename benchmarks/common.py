"""What every benchmark records next to its figures: hardware, commit, date; and the JSON writer.

One place for it, so that every result file describes the machine the same way and the results
table (``python -m benchmarks table``) can say which hardware produced each figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# The shared data beside the checkout; GENLAB_DATA points elsewhere (a worktree, a GPU box).
DATA = Path(os.environ.get("GENLAB_DATA") or ROOT.parent / "shared" / "data")


def read_config(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a dict (an empty file: ``{}``)."""
    return yaml.safe_load(Path(path).read_text()) or {}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. ``AMD EPYC``), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str | torch.device | None = None) -> dict[str, Any]:
    """The machine a figure came from: CPU model and cores, torch threads, GPU name if any.

    Args:
        device: The device the figure was measured on; a CUDA device adds its name.
    """
    device = torch.device(device) if device is not None else None
    gpu = None
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        gpu = torch.cuda.get_device_name(device if device is not None else 0)
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "machine": platform.machine(), "gpu": gpu,
            "device": str(device) if device is not None else ("cuda" if gpu else "cpu")}


def describe(hw: dict[str, Any] | str | None) -> str:
    """One short line for a table cell: ``H100 80GB HBM3`` or ``AMD EPYC, 2 cores, 1 thread``."""
    if hw is None:
        return "unknown"
    if isinstance(hw, str):
        return hw
    if hw.get("gpu") and str(hw.get("device", "cuda")).startswith("cuda"):
        return str(hw["gpu"])
    cpu = hw.get("cpu") or hw.get("cpu_model") or hw.get("machine") or "CPU"
    parts = [str(cpu)]
    if hw.get("cpu_count") or hw.get("cores"):
        parts.append(f"{hw.get('cpu_count') or hw.get('cores')} cores")
    if hw.get("threads"):
        parts.append(f"{hw['threads']} thread{'s' if hw['threads'] != 1 else ''}")
    return ", ".join(parts)


def git_commit(path: str | Path | None = None) -> str | None:
    """Short hash of HEAD, or of the last commit that touched ``path``; ``None`` outside git.

    A ``-dirty`` suffix on HEAD says the working tree had uncommitted changes.
    """
    try:
        if path is not None:
            out = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(path)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=10)
            return out.stdout.strip() or None
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        return (head + ("-dirty" if dirty.strip() else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def command(module: str, argv: list[str] | None = None) -> str:
    """The command line that reproduces a run of ``python -m <module>``."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", module, *args])


def software() -> dict[str, str]:
    """Python, torch and Lightning versions."""
    import lightning

    return {"python": platform.python_version(), "torch": torch.__version__,
            "lightning": lightning.__version__}


def load_average(values: Sequence[float] | None = None) -> list[float]:
    """The 1, 5 and 15 minute load averages (``values``, else now), rounded to 0.01."""
    return [round(x, 2) for x in (os.getloadavg() if values is None else values)]


def load_span(before: Sequence[float]) -> dict[str, list[float]]:
    """The load averages at the start of a run (``before``, from ``os.getloadavg()``) and now.

    A long run records both ends, since other processes on a shared machine can come and go
    during it and skew its timings.
    """
    return {"before": load_average(before), "after": load_average()}


def stamp(device: str | torch.device | None = None) -> dict[str, Any]:
    """The record every result JSON carries: hardware, software, commit, date, load average."""
    return {"hardware": hardware(device), "software": software(), "commit": git_commit(),
            "date": now(), "load_average_1_5_15_min": load_average()}


def fit_config(config: str | Path, source: str, root: str | Path,
               extra: Sequence[str] = ()) -> tuple[Path, dict[str, float]]:
    """``genlab fit --config config --data.source source --run.root root *extra``, in this
    process; the newest ``last.ckpt`` under ``root`` and the ``cpu`` and ``wall`` seconds it took.

    CPU time is the process's own (one thread a benchmark): the honest measure on a shared machine.
    """
    from genlab.cli import main as genlab_main  # the CLI pulls in Lightning: only when fitting

    argv = ["fit", "--config", str(config), "--data.source", source, "--run.root", str(root)]
    cpu, wall = time.process_time(), time.perf_counter()
    genlab_main([*argv, *extra])
    seconds = {"cpu": round(time.process_time() - cpu, 1),
               "wall": round(time.perf_counter() - wall, 1)}
    return max(Path(root).rglob("last.ckpt"), key=lambda p: p.stat().st_mtime), seconds


def point_options(parser: argparse.ArgumentParser, out: str | Path,
                  steps_help: str = "default: the config's") -> argparse.ArgumentParser:
    """Add the options the toy-point benchmarks share: --max-steps, --num, --threads, --out.

    Returns ``parser``, so a script can end with ``point_options(parser, ...).parse_args()``.
    """
    parser.add_argument("--max-steps", type=int, default=None, help=steps_help)
    parser.add_argument("--num", type=int, default=2500, help="samples scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(out))
    return parser


def mnist_preset(args: Any, title: str, module: str) -> tuple[str, int, dict[str, Any]]:
    """Device, batch size and report header of an MNIST GPU-preset benchmark run.

    ``args`` carries ``threads``, ``cpu_small`` (the reduced CPU run), optionally ``cpu`` (a
    CPU preset at its own size) and ``batch_size``; the device is the CPU for ``cpu_small`` or
    ``cpu``, or without CUDA.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = getattr(args, "cpu", False)
    device = "cpu" if args.cpu_small or cpu or not torch.cuda.is_available() else "cuda"
    batch = args.batch_size or (8 if device == "cpu" else 256)
    preset = ("cpu-small (reduced size; not a quality figure)" if args.cpu_small
              else "cpu" if cpu else "gpu")
    report = {"benchmark": title, "command": command(module), "device": device, **stamp(device),
              "preset": preset, "torch": torch.__version__}
    return device, batch, report


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one, keys joined by ``/`` (``{"a": {"b": 1}}`` -> ``{"a/b": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: v})
    return out


def evaluated_fid(report: str | Path) -> float | None:
    """The FID in a ``genlab evaluate --out`` JSON (not its real-data floor); ``None``: none."""
    found = [v for k, v in flat(json.loads(Path(report).read_text())).items()
             if k.endswith("fid") and "floor" not in k]
    return float(found[0]) if found else None


REPO_DIRS = ("runs", "benchmarks", "configs", "classifiers")
_ABSOLUTE = re.compile(r"(?<![\w.:/-])/(?:[\w.+-]+/)*[\w.+-]+")


def relativize(text: str, root: Path = ROOT) -> str:
    """``text`` with machine paths gone: repository paths made relative, others shown as
    ``<last/two>`` (a file of the user's own, e.g. ``<teacher/last.ckpt>``)."""
    def swap(match: re.Match) -> str:
        path = Path(match.group(0))
        if path == root or root in path.parents:
            return str(path.relative_to(root)) or "."
        for i, part in enumerate(path.parts):  # another checkout: from its run folder on
            if part in REPO_DIRS:
                return str(Path(*path.parts[i:]))
        return "<" + "/".join(path.parts[-2:] if len(path.parts) > 3 else path.parts[-1:]) + ">"
    return _ABSOLUTE.sub(swap, text)


MACHINE_ROOTS = ("/work/", "/tmp/", "/home/", "/root/", "/Users/", "/scratch/")


def without_machine_paths(value: Any) -> Any:
    """``value`` (a JSON-like tree) with machine paths in its strings made relative or short."""
    if isinstance(value, dict):
        return {k: without_machine_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_machine_paths(v) for v in value]
    if isinstance(value, str) and any(root in value for root in MACHINE_ROOTS):
        return relativize(value)
    return value


def write_result(result: dict[str, Any], out: str | Path) -> Path:
    """Write ``result`` as indented JSON to ``out`` (parents made; no machine paths inside)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = without_machine_paths(json.loads(json.dumps(result, default=str)))
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}", flush=True)  # flushed: a harness reading a pipe sees it as it happens
    return out


def earlier_training(out: Path, ckpt: Path,
                     keys: tuple[str, ...] = ("train_seconds", "max_steps")) -> dict:
    """What the result at ``out`` recorded about training ``ckpt`` (its ``keys``), when it
    trained that file.

    Rescoring a checkpoint (``--ckpt``, e.g. with another classifier) keeps the record of the
    run that trained it instead of dropping it.
    """
    if not out.is_file():
        return {}
    earlier = json.loads(out.read_text())
    if Path(earlier.get("checkpoint", "")).resolve() != ckpt.resolve():
        return {}
    kept = {k: earlier[k] for k in keys if k in earlier}
    # A rescore of a rescore still names the run that trained the checkpoint.
    return {**kept, "trained_by": earlier.get("trained_by", earlier.get("command")),
            "trained_at": earlier.get("trained_at", earlier.get("date"))}
