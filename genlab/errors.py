"""User errors: the exception type for them, and one-line explanations of parser errors."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterable

DEBUG_ENV = "GENLAB_DEBUG"  # set to 1: a user error prints its full traceback too


class GenlabError(Exception):
    """A problem with the user's input (config, data, checkpoint, plugin), not a bug in genlab.

    The CLI prints these as a single line without a traceback, so the message must name the
    problem and the fix.
    """


def raise_first(problems: Iterable[tuple[bool, str]]) -> None:
    """Raise ``GenlabError`` with the message of the first ``(bad, message)`` pair that is bad.

    Lets a plugin validate its hyperparameters as one readable table of conditions.
    """
    for bad, message in problems:
        if bad:
            raise GenlabError(message)


def rejected_by_optimizer(err: BaseException) -> GenlabError | None:
    """A torch optimizer's ``ValueError`` (``Invalid learning rate: -1.0``) as a ``GenlabError``.

    ``None`` for any other error, which stays a bug report with a traceback.
    """
    frames = traceback.extract_tb(err.__traceback__)
    if not isinstance(err, ValueError) or not frames:
        return None
    if "torch/optim/" not in frames[-1].filename.replace("\\", "/"):
        return None
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return GenlabError(f"the optimizer rejects a hyperparameter ({detail}); check the learning "
                       f"rates, betas and weight decay under model.init_args ({DEBUG_ENV}=1 "
                       f"shows the traceback)")


# Lines of jsonargparse's nested union reports that explain nothing on their own.
_NOISE = (
    "Does not validate",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Problem with given class_path",
    "Expected a <class 'NoneType'>",
    "Expected a path but",
)
_CLASS_NOT_FOUND = ("Expected a dot import path string", "does not correspond to a subclass")


def explain_parse_error(message: str, known: Callable[[str], list[str]]) -> str:
    """Condense a jsonargparse error report into one line that names the key and the problem.

    ``known(section)`` lists the registered class names for ``"model"`` or ``"data"``, shown
    when a class name does not resolve.
    """
    if message.startswith("Problems parsing config"):
        where = re.search(r"line (\d+), column (\d+)", message)
        detail = message.splitlines()[0].removeprefix("Problems parsing config: ")
        at = f" at line {where[1]}, column {where[2]}" if where else ""
        return f"the config is not valid YAML{at}: {detail}"
    keys = re.findall(r'Parser key "([^"]+)"', message)
    cls = re.search(r"Problem with given class_path '([^']+)'", message)
    leaf = ""
    for line in message.splitlines():
        text = re.sub(r'^Parser key "[^"]+":\s*', "", line.strip().removeprefix("- "))
        if text and not text.startswith(_NOISE):
            leaf = text
            break
    where = ".".join(keys)
    if any(marker in leaf for marker in _CLASS_NOT_FOUND) and keys:
        name = message.rsplit("Given value:", 1)[-1].strip()
        names = ", ".join(known(keys[0])) or "none"
        return (f"{keys[0]}: no class named {name!r}; installed: {names} "
                f"(name a {keys[0]} by its class name; `genlab list` shows the plugins)")
    owner = f" of {cls[1]}" if cls else ""
    prefix = f"{where}{owner}: " if where else ""
    return f"{prefix}{leaf or message.strip()} (see `genlab <command> --help` for the options)"
