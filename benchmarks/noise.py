"""Time and peak memory of one training-noise draw at simulated world sizes (one process).

    python -m benchmarks.noise                     # local batch 32 of 3x256x256, worlds 1 8 64
    python -m benchmarks.noise --small             # local batch 8 of 3x64x64 (a quick CPU run)
    python -m benchmarks.noise --device cuda       # the same on a GPU

``genlab.noise.share_randn`` gives process ``rank`` of ``world`` its rows of the global batch's
noise; this script plays rank 0 of each world size in one process, no cluster needed:

- **peak memory**: the most bytes of tensors alive at once during the draw, beyond those alive
  before it: output and every temporary. On a CPU from torch's profiler (``profile_memory``:
  each allocation and free, in order), on a GPU from ``torch.cuda.max_memory_allocated``.
- **time**: the best of ``--repeats`` draws, without the profiler, wall seconds (after a device
  sync) and process CPU seconds.

Schemes: ``keyed`` is genlab's (per-example counter-based draws, cost of the local batch);
``global`` is the scheme genlab used before (draw the whole global batch with ``torch.randn``
on every rank and keep this rank's rows), kept here as the comparison. Target: keyed's peak
memory at world 64 within 2x of world 1. Figures go to ``benchmarks/results/noise_<device>.json``
(``noise_<device>_small.json`` with ``--small``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import RESULTS, command, stamp, write_result
from genlab.noise import share_randn

SCHEMES = ("keyed", "global")


def global_draw(shape: tuple[int, ...], rank: int, world: int,
                device: torch.device) -> torch.Tensor:
    """The scheme genlab used before: the whole global batch on every rank, this rank's rows."""
    full = (shape[0] * world, *shape[1:])
    return torch.randn(full, device=device).unflatten(0, (-1, world)).select(1, rank).contiguous()


def draw(scheme: str, shape: tuple[int, ...], world: int, device: torch.device) -> torch.Tensor:
    """One draw of rank 0's noise of local ``shape`` under ``scheme`` in a world of ``world``."""
    if scheme == "keyed":
        return share_randn(shape, rank=0, world=world, device=device)
    return global_draw(shape, 0, world, device)


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """The most bytes of tensors alive at once while ``fn`` runs, beyond those alive before."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Each op carries the bytes it allocated net of what it freed; frees outside any op are
    # "[memory]" events of their own. Summed in time order, the running total's maximum.
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events())
    live = most = 0
    for _, nbytes in changes:
        live += nbytes
        most = max(most, live)
    return most


def measure(scheme: str, shape: tuple[int, ...], world: int, device: str | torch.device = "cpu",
            repeats: int = 3) -> dict[str, Any]:
    """Peak memory of one draw and the best time of ``repeats`` more, rank 0 of ``world``."""
    device = torch.device(device)
    torch.manual_seed(0)
    draw(scheme, (1, 2), world, device)  # warm-up: code paths, CUDA context
    out = draw(scheme, shape, world, device)
    out_bytes = out.numel() * out.element_size()
    del out
    peak = peak_bytes(lambda: draw(scheme, shape, world, device), device)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        draw(scheme, shape, world, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"scheme": scheme, "world": world, "peak_bytes": peak, "output_bytes": out_bytes,
            "seconds_wall": round(min(walls), 5) if walls else None,
            "seconds_cpu": round(min(cpus), 5) if cpus else None, "repeats": repeats}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="local batch 8 of 3x64x64")
    parser.add_argument("--shape", type=int, nargs="+", default=None,
                        help="local shape, batch first (default 32 3 256 256)")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON (default benchmarks/results/noise_<device>.json)")
    return parser.parse_args(argv)


def report(rows: list[dict[str, Any]]) -> None:
    print(f"{'scheme':8s}{'world':>6s}{'peak MiB':>11s}{'output MiB':>12s}{'wall s':>9s}"
          f"{'CPU s':>9s}")
    for r in rows:
        print(f"{r['scheme']:8s}{r['world']:6d}{r['peak_bytes'] / 2**20:11.1f}"
              f"{r['output_bytes'] / 2**20:12.1f}{r['seconds_wall']:9.4f}{r['seconds_cpu']:9.4f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = tuple(args.shape or ((8, 3, 64, 64) if args.small else (32, 3, 256, 256)))
    rows = []
    for scheme in args.schemes:
        for world in args.worlds:
            rows.append(measure(scheme, shape, world, args.device, args.repeats))
            report(rows[-1:])
    keyed = {r["world"]: r["peak_bytes"] for r in rows if r["scheme"] == "keyed"}
    worst = max(keyed.values()) / max(min(keyed.values()), 1) if keyed else None
    result = {
        "benchmark": "training noise: one draw of rank 0's share at simulated world sizes",
        "local_shape": list(shape), "worlds": args.worlds, "rows": rows,
        "keyed_peak_ratio_largest_to_smallest": round(worst, 3) if worst else None,
        "target": "keyed peak memory at the largest world within 2x of world 1",
        "protocol": {"peak": "most bytes of tensors alive at once during one draw (CPU: torch "
                             "profiler's allocation events; CUDA: max_memory_allocated)",
                     "time": f"best of {args.repeats} draws, no profiler",
                     "threads": args.threads},
        "command": command("benchmarks.noise", argv), **stamp(args.device),
    }
    print()
    report(rows)
    if worst:
        print(f"keyed peak memory, largest / smallest world: {worst:.2f}x (target <= 2)")
    suffix = "_small" if args.small else ""
    out = args.out or RESULTS / f"noise_{torch.device(args.device).type}{suffix}.json"
    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
