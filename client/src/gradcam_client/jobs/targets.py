"""Which class to explain: the predicted one, a fixed one (index or forgiving name), or one
class for the whole video chosen from the predictions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradcam_client.errors import InputError
from gradcam_client.remote.contract import PREDICTED_CLASS

PREDICTED = "predicted"
VIDEO = "video"


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def find_class(query: str, class_names: Sequence[str]) -> int:
    """The index of a class given by index or by name ("siamese-cat" finds "Siamese cat")."""
    text = query.strip()
    if re.fullmatch(r"-?\d+", text):
        index = int(text)
        if not 0 <= index < len(class_names):
            raise InputError(f"class index {index} is out of range 0..{len(class_names) - 1}")
        return index
    wanted = _normalise(text)
    normalised = [_normalise(name) for name in class_names]
    exact = [i for i, name in enumerate(normalised) if name == wanted]
    if len(exact) == 1:
        return exact[0]
    if exact:
        which = ", ".join(f"{i} ({class_names[i]})" for i in exact)
        raise InputError(f"class name {query!r} is ambiguous; give an index: {which}")
    words = wanted.split(" ")
    containing = [
        i for i, name in enumerate(normalised) if wanted and _has_words(name.split(" "), words)
    ]
    if len(containing) == 1:
        return containing[0]
    close = difflib.get_close_matches(wanted, normalised, n=5, cutoff=0.6)
    # A small typo ("siamse cat") is forgiven when one class is clearly meant.
    strong = [c for c in close if difflib.SequenceMatcher(None, wanted, c).ratio() > 0.85]
    if not containing and len(strong) == 1:
        return normalised.index(strong[0])
    # Classes naming the query as words come first ("cat" -> "tiger cat", "Siamese cat").
    candidates = containing + [normalised.index(c) for c in close]
    suggestions = [class_names[i] for i in dict.fromkeys(candidates)][:6]
    hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
    kind = "ambiguous" if len(containing) > 1 else "unknown"
    raise InputError(f"{kind} class name {query!r}{hint}")


def _has_words(name: list[str], words: list[str]) -> bool:
    """Whether `words` appear in `name` consecutively ("tiger" and "tiger cat" in "tiger cat")."""
    n = len(words)
    return any(name[i : i + n] == words for i in range(len(name) - n + 1))


@dataclass(frozen=True)
class TargetChoice:
    """`predicted` (per frame), a fixed class index, or `video` (one class for the clip)."""

    mode: str = PREDICTED
    class_index: int = PREDICTED_CLASS

    @classmethod
    def parse(cls, text: str | None, class_names: Sequence[str]) -> TargetChoice:
        if text is None or text.strip().lower() in ("", PREDICTED):
            return cls()
        if text.strip().lower() == VIDEO:
            return cls(mode=VIDEO)
        return cls(mode="fixed", class_index=find_class(text, class_names))

    @property
    def needs_first_pass(self) -> bool:
        """`video` needs the predictions of the whole clip before explaining it."""
        return self.mode == VIDEO

    def request_value(self) -> int:
        """The TARGET_CLASS to send for every frame."""
        return self.class_index


def video_class(probabilities: np.ndarray) -> int:
    """The class with the highest mean probability over the clip ([frames, classes])."""
    return int(np.argmax(probabilities.mean(axis=0)))
