"""The ``genlab`` command: dispatches to a subcommand, importing only what that subcommand needs.

``genlab --help`` and ``genlab list`` answer without importing torch or Lightning (seconds of
start-up); ``fit``/``validate``/``test``/``predict`` go to ``genlab.lightning_cli.GenlabCLI``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Any

from rich.console import Console

from genlab.errors import DEBUG_ENV, GenlabError

console = Console(stderr=True, highlight=False, soft_wrap=True)

# name -> (module, function taking the remaining arguments, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "list": ("genlab.cli", "list_main", "installed model plugins: name, class, package, version"),
    "sample": ("genlab.sampling", "sample_main", "draw samples from a checkpoint"),
    "evaluate": ("genlab.evaluation", "evaluate_main",
                 "score a checkpoint (FID/KID, precision/recall, modes, likelihood)"),
    "classifier": ("genlab.train_classifier", "classifier_main",
                   "train the offline digit classifier used as FID feature extractor"),
    "export": ("genlab.export", "export_main",
               "write a checkpoint as a folder to share: safetensors, config, model card"),
    "ema": ("genlab.posthoc", "ema_main",
            "an EMA of any length after training, from PostHocEMA snapshots (--sweep scores)"),
    "new-plugin": ("genlab.scaffold", "new_plugin_main",
                   "write a model-plugin package to start from"),
}
LIGHTNING_COMMANDS = {
    "fit": "train a model: genlab fit --config configs/quickstart.yaml",
    "validate": "run the validation loop of a checkpoint",
    "test": "run the test loop of a checkpoint",
    "predict": "run the predict loop of a checkpoint",
}


def __getattr__(name: str) -> Any:
    # ``from genlab.cli import GenlabCLI`` keeps working without making every command pay for
    # importing Lightning.
    if name == "GenlabCLI":
        from genlab.lightning_cli import GenlabCLI

        return GenlabCLI
    raise AttributeError(f"module 'genlab.cli' has no attribute {name!r}")


def print_help() -> None:
    """Print the top-level usage: every subcommand with one line of help."""
    out = Console(highlight=False)
    out.print("usage: genlab COMMAND \\[options]   (genlab COMMAND --help for its options)\n")
    out.print("Generative models on PyTorch Lightning; model families are plugins.\n")
    out.print("[bold]Lightning commands[/] (LightningCLI: --config, --model, --data, --trainer.*):")
    for name, text in LIGHTNING_COMMANDS.items():
        out.print(f"  {name:<11} {text}")
    out.print("[bold]genlab commands[/]:")
    for name, (_, _, text) in COMMANDS.items():
        out.print(f"  {name:<11} {text}")


def list_main(argv: list[str]) -> None:
    """``genlab list [--check]``: print the model plugins; ``--check`` imports each one."""
    from rich.table import Table

    from genlab.registry import MODEL_GROUP, plugins

    parser = argparse.ArgumentParser(prog="genlab list", description=list_main.__doc__)
    parser.add_argument("--check", action="store_true",
                        help="import every plugin and report the ones that fail (slower)")
    args = parser.parse_args(argv)
    table = Table(title="genlab model plugins")
    for column in ("name", "class", "package", "version", "status"):
        table.add_column(column)
    for p in plugins(MODEL_GROUP, load=args.check):
        if args.check:
            status = "[green]ok[/]" if p.cls is not None else f"[red]{p.status}[/]"
        else:
            status = "installed" if p.module_found() else f"[red]module {p.module} not found[/]"
        table.add_row(p.name, p.target, p.package, p.version, status)
    Console(highlight=False).print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``genlab`` console script."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if not args or args[0] in ("-h", "--help"):
            print_help()
        elif args[0] in COMMANDS:
            module, function, _ = COMMANDS[args[0]]
            getattr(importlib.import_module(module), function)(args[1:])
        else:
            from genlab.lightning_cli import GenlabCLI

            GenlabCLI(args=argv)  # None: LightningCLI reads sys.argv itself
    except GenlabError as err:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exception(err)
        console.print(f"[bold red]error:[/] {err}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
