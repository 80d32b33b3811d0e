"""``python -m benchmarks``: run the benchmarks of every family, or rebuild the results table.

    python -m benchmarks run --preset cpu [--only gan,vae,...]   # about 20 minutes on 2 cores
    python -m benchmarks run --preset gpu [--smoke]              # --smoke: toy size on a CPU
    python -m benchmarks run --preset gpu-quick [--smoke]        # headline GPU figures, 8 min
    python -m benchmarks table                                   # RESULTS.md from the JSON
    python -m benchmarks list                                    # the families and commands
"""

from __future__ import annotations

import argparse

from benchmarks.harness import FAMILIES, PRESETS, argv_for, run, write_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="run the families' benchmarks, write summary + table")
    go.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    go.add_argument("--only", default=None,
                    help="comma-separated families: " + ",".join(f.name for f in FAMILIES))
    go.add_argument("--smoke", action="store_true",
                    help="the GPU preset's command lines at toy size, runnable on a CPU")
    sub.add_parser("table", help="rebuild benchmarks/results/RESULTS.md without training")
    show = sub.add_parser("list", help="print each family's command line under a preset")
    show.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    show.add_argument("--smoke", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "run":
        if args.smoke and args.preset == "cpu":
            raise SystemExit("--smoke shrinks a GPU preset: use it with --preset gpu or "
                             "gpu-quick")
        run(args.preset, args.only, args.smoke)
    elif args.command == "table":
        write_table()
    else:
        for f in PRESETS[args.preset]:
            print(f"{f.name:16s} python -m benchmarks.{f.script} "
                  + " ".join(argv_for(f, args.preset, args.smoke)))


if __name__ == "__main__":
    main()
