"""Text for the tiny language model: the alphabet, encoding, and generated records.

Nothing is downloaded: :func:`make_records` writes short records from templates in one of
several *styles*: generic sentences (pre-training, and the Secret Sharer's background text),
and weather reports, recipes, sports results and shop orders (the federated clients'
domains); ``"mixed"`` draws from every template. Every record is its own training example:
:func:`encode_records` turns it into ``"\\n" + text + "\\n"`` padded with ``PAD`` to
``context + 1`` token ids, so that a loss can ignore the padding and differential privacy
can protect one record.

Examples
--------
>>> from course_lib.llm.data import make_records, encode_records, decode
>>> make_records(2, style="shop", seed=0)
['order 8743 sent to hanoi.', 'order 9820: 30 x cups, 9 yuan']
>>> ids = encode_records(["hi"], context=5)
>>> ids
tensor([[ 1, 10, 11,  1,  0,  0]])
>>> decode(ids[0])
'\\nhi\\n'
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib._validation import require_int

__all__ = ["ALPHABET", "PAD", "STYLES", "encode", "decode", "encode_records", "make_records"]

# Token 0 is padding; "\n" starts and ends every record.
ALPHABET = "\n abcdefghijklmnopqrstuvwxyz0123456789.,:;'-/%+"
PAD = 0
_INDEX = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def encode(text: str) -> torch.Tensor:
    """Token ids of ``text``, shape ``(len(text),)``; every character must be in ALPHABET."""
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str, got {type(text).__name__}")
    unknown = sorted(set(text) - set(_INDEX))
    if unknown:
        raise ValueError(f"`text` has characters outside the alphabet: {unknown!r}")
    return torch.tensor([_INDEX[ch] for ch in text], dtype=torch.long)


def decode(ids: torch.Tensor | list[int]) -> str:
    """The text of token ids (padding is dropped)."""
    return "".join(ALPHABET[i - 1] for i in torch.as_tensor(ids).tolist() if i != PAD)


def encode_records(records: list[str], *, context: int = 32) -> torch.Tensor:
    """One row per record: ``"\\n" + record + "\\n"`` padded with PAD, shape ``(n, context+1)``.

    A row gives the inputs ``row[:-1]`` and the next-token targets ``row[1:]``.
    """
    require_int("context", context, minimum=2)
    if isinstance(records, str) or not all(isinstance(r, str) for r in records):
        raise TypeError("`records` must be a list of str")
    out = torch.full((len(records), context + 1), PAD, dtype=torch.long)  # (n, context + 1)
    for i, record in enumerate(records):
        if len(record) > context - 1:
            raise ValueError(f"`records`[{i}] has {len(record)} characters, at most "
                             f"context - 1 = {context - 1} fit: {record!r}")
        out[i, :len(record) + 2] = encode("\n" + record + "\n")
    return out


_NAMES = "anna ben chen dora eli fang gus hana ivan jun kai lina mo nora omar pia qi rosa sam tao"
_WORDS = dict(
    name=_NAMES.split(),
    verb="bought sold found lost saw made sent took".split(),
    noun="apples books cups pens maps keys hats cakes".split(),
    day="mon tue wed thu fri sat sun".split(),
    city="paris lima oslo cairo delhi hanoi quito rome".split(),
    sky="sunny cloudy rainy windy foggy snowy".split(),
    food="flour rice sugar milk eggs tofu beans salt".split(),
    verb2="mix boil stir bake fry chop".split(),
    team="lions tigers bears wolves hawks sharks".split(),
    item="pens cups lamps socks bags mugs".split(),
)
STYLES = {  # style -> templates; {n}, {t}, {id} are numbers, the rest words from _WORDS
    "generic": ["{name} {verb} {n} {noun} on {day}.", "{name} lives in {city}.",
                "{name} met {name} in {city}.", "the {noun} cost {n} yuan.",
                "call {name} at {id}.", "it was {sky} in {city}.", "{name} likes {food}.",
                "the {team} play on {day}.", "{name} has {t} {item}."],
    "weather": ["{day}: {sky}, {t} c, wind {n}", "{city} {day}: {sky}, {t} c"],
    "recipe": ["{verb2} {n} cups {food} with {food}.", "{verb2} the {food} for {t} min."],
    "sport": ["{team} beat {team} {n}-{t}.", "{team} {n}, {team} {t}; final."],
    "shop": ["order {id}: {n} x {item}, {t} yuan", "order {id} sent to {city}."],
}


def make_records(n: int, *, style: str = "generic", seed: int = 0) -> list[str]:
    """``n`` random records of one ``style`` (see :data:`STYLES`), reproducible from ``seed``."""
    require_int("n", n, minimum=0, maximum=10_000_000)
    if style not in STYLES and style != "mixed":
        raise ValueError(f"`style` must be 'mixed' or one of {sorted(STYLES)}, got {style!r}")
    require_int("seed", seed, minimum=0)
    rng = np.random.default_rng([seed, sorted([*STYLES, "mixed"]).index(style)])
    templates = sum(STYLES.values(), []) if style == "mixed" else STYLES[style]
    records = []
    for _ in range(n):
        text = templates[rng.integers(len(templates))]
        while "{" in text:  # fill the first slot, then the next, ...
            start = text.index("{")
            slot = text[start + 1:text.index("}", start)]
            if slot in _WORDS:
                word = _WORDS[slot][rng.integers(len(_WORDS[slot]))]
            else:  # {n} 1-99, {t} 0-39, {id} 4 digits
                word = str({"n": rng.integers(1, 100), "t": rng.integers(40),
                            "id": rng.integers(1000, 10000)}[slot])
            text = text[:start] + word + text[start + len(slot) + 2:]
        records.append(text)
    return records
