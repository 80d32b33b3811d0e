"""Images per second of the bare ImageDataModule training DataLoader (no model).

    python -m benchmarks.data_throughput --source ../shared/data/mnist --workers 2

Iterates the training DataLoader for ``--batches`` batches after ``--warmup`` batches (worker
start-up excluded), ``--repeats`` times, and writes the figures with the hardware, the software
versions and the date to benchmarks/results/data_throughput.json. On a shared machine other
processes take cores from the workers, so each repeat also records how many cores the rest of
the machine used meanwhile (from /proc), and the median over quiet repeats is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import datasets
import torchvision

from benchmarks.common import DATA, RESULTS, load_span, software, stamp, write_result
from genlab.data.images import ImageDataModule

DEFAULT_SOURCE = DATA / "mnist"
DEFAULT_OUT = RESULTS / "data_throughput.json"
QUIET_CORES = 0.1  # a repeat counts as quiet when other processes used less than this


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="MNIST-like source")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--binarize", action="store_true", help="dynamic binarization on")
    parser.add_argument("--in-memory", action="store_true",
                        help="decode the images once at setup (data.in_memory)")
    parser.add_argument("--warmup", type=int, default=20, help="batches not timed")
    parser.add_argument("--batches", type=int, default=100, help="batches timed per repeat")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the results")
    return parser.parse_args(argv)


def _busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (Linux /proc/stat)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _process_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``pids``."""
    total = 0.0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (float(stat[11]) + float(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Images per second of each repeat, over a persistent set of workers, and the CPU cores
    that other processes on the machine took meanwhile (a shared machine slows the loader).
    """
    dm = ImageDataModule(args.source, image_size=args.image_size, channels=args.channels,
                         binarize=args.binarize, batch_size=args.batch_size,
                         num_workers=args.workers, in_memory=args.in_memory)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = iter(loader)

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:  # new epoch; the workers persist
            batches = iter(loader)
            return next(batches)

    for _ in range(args.warmup):
        next_batch()
    ours = [os.getpid()] + [w.pid for w in getattr(batches, "_workers", [])]
    rates, others = [], []
    for _ in range(args.repeats):
        busy, own = _busy_seconds(), _process_seconds(ours)
        start, images = time.perf_counter(), 0
        for _ in range(args.batches):
            images += len(next_batch()["x"])
        elapsed = time.perf_counter() - start
        rates.append(images / elapsed)
        others.append(((_busy_seconds() - busy) - (_process_seconds(ours) - own)) / elapsed)
    return rates, others


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    load_before = os.getloadavg()
    rates, others = measure(args)
    quiet = [r for r, o in zip(rates, others) if o < QUIET_CORES]
    result = {
        "benchmark": "ImageDataModule train DataLoader, bare (no model)",
        "images_per_second": round(statistics.median(rates)),
        "images_per_second_quiet": round(statistics.median(quiet)) if quiet else None,
        "quiet_means": f"median of the repeats during which other processes took < "
                       f"{QUIET_CORES} cores ({len(quiet)} of {len(rates)})",
        "images_per_second_repeats": [round(r) for r in rates],
        "command": "python -m benchmarks.data_throughput " + " ".join(sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        **stamp("cpu"),
        "cores_used_by_other_processes_per_repeat": [round(max(o, 0.0), 2) for o in others],
        "load_average_1_5_15_min": load_span(load_before),
        "software": {**software(), "torchvision": torchvision.__version__,
                     "datasets": datasets.__version__},
    }
    quiet_text = (f"{result['images_per_second_quiet']:,} images/s" if quiet else "none")
    print(f"{result['images_per_second']:,} images/s (median of {args.repeats} repeats; "
          f"{args.workers} workers, batch {args.batch_size}, "
          f"{args.channels}x{args.image_size}x{args.image_size}, {os.cpu_count()} CPUs); "
          f"with the machine otherwise idle: {quiet_text} ({len(quiet)} repeats)")
    for rate, other in zip(rates, others):
        print(f"  {rate:9,.0f} images/s   other processes took {max(other, 0):.2f} cores")
    write_result(result, args.out)  # last, so its "-> path" line ends the output
    return result


if __name__ == "__main__":
    main()
