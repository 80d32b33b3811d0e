"""Captions written from class labels, in several phrasings, some held out for evaluation.

Text-to-image on a labelled data set without captions (MNIST): each image gets a caption from
its label in a phrasing drawn at random, "seven", "the digit 7", "a handwritten seven"...
Training batches use the training phrasings only; validation and test batches use held-out ones,
so a text-conditioned model is measured on wordings it never saw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from genlab.errors import GenlabError

# {name}: the class's name in the data ("7"); {word}: its caption word ("seven").
TRAIN_PHRASINGS: tuple[str, ...] = (
    "{word}", "{name}", "the digit {name}", "the digit {word}", "a handwritten {word}",
    "a handwritten {name}", "the number {word}", "number {name}", "an image of a {word}",
    "a {word}", "a photo of the number {name}", "{word}, written by hand",
)
HELDOUT_PHRASINGS: tuple[str, ...] = (
    "a picture of the digit {word}", "a drawing of a {name}", "handwritten digit {word}",
    "the numeral {name}",
)
# "an" before a vowel sound: "an eight", "an 8", "an 11", but "a one", "a unit" (a /w/, /j/ sound).
AN_BEFORE = re.compile(r"\ba (?=(?!one\b|uni|use|eu)[aeiou]|8|11\b|18\b)", re.IGNORECASE)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def caption_words(names: Sequence[str]) -> list[str]:
    """The word of each class: number words for the digits 0-9, else the class names."""
    if list(names) == [str(i) for i in range(len(names))] and len(names) <= 10:
        return list(NUMBER_WORDS[: len(names)])
    return [str(n).replace("_", " ") for n in names]


class Captioner:
    """Writes a caption for a class label in a phrasing drawn with the example's own generator.

    Args:
        names: Class names as the data has them (``"7"``).
        train: Use the training phrasings; ``False``: the held-out ones.
        words: The caption word of each class; ``None``: ``caption_words(names)``.
    """

    def __init__(self, names: Sequence[str], train: bool,
                 words: Sequence[str] | None = None) -> None:
        self.names = [str(n) for n in names]
        self.words = list(words) if words is not None else caption_words(self.names)
        if len(self.words) != len(self.names):
            raise GenlabError(f"data.caption_words has {len(self.words)} words but the data has "
                              f"{len(self.names)} classes; give one word per class")
        self.phrasings = TRAIN_PHRASINGS if train else HELDOUT_PHRASINGS

    def render(self, phrasing: str, label: int) -> str:
        """``phrasing`` filled in for ``label`` ("a eight" becomes "an eight", "a one" stays)."""
        text = phrasing.format(name=self.names[label], word=self.words[label])
        return AN_BEFORE.sub("an ", text)

    def all_captions(self) -> set[str]:
        """Every caption this captioner can write."""
        return {self.render(p, c) for p in self.phrasings for c in range(len(self.names))}

    def __call__(self, label: int, rng: torch.Generator) -> str:
        """A caption of ``label`` in a phrasing drawn from ``rng``."""
        pick = int(torch.randint(len(self.phrasings), (), generator=rng))
        return self.render(self.phrasings[pick], label)
