"""Validation of every user input, before any work starts. Each problem is one BadInput line."""
from __future__ import annotations

import difflib

MAX_THREADS = 256


class BadInput(Exception):
    pass


def _suggest(value: str, valid) -> str:
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def names(option: str, text: str, valid, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise BadInput(f"{option}: give at least one {what}; valid: {', '.join(valid)}")
    for item in items:
        if item not in valid:
            raise BadInput(f"{option}: unknown {what} {item!r}{_suggest(item, valid)}; valid: {', '.join(valid)}")
    if len(set(items)) != len(items):
        raise BadInput(f"{option}: {what} listed twice in {text!r}")
    return items


def int_list(option: str, text: str, lo: int = 1, hi: int = MAX_THREADS) -> list[int]:
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise BadInput(f"{option}: expected comma-separated whole numbers, e.g. 1,2,4,8; got {text!r}")
    out = []
    for s in items:
        try:
            v = int(s)
        except ValueError:
            raise BadInput(f"{option}: {s!r} is not a whole number") from None
        if not lo <= v <= hi:
            raise BadInput(f"{option}: {v} is out of range; use {lo} to {hi}")
        out.append(v)
    if len(set(out)) != len(out):
        raise BadInput(f"{option}: {text!r} lists a value twice")
    return sorted(out)


def positive(option: str, value: float | None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:
        raise BadInput(f"{option}: must be greater than 0, got {value}")


def sizes(text: str | None, known: set[str]) -> tuple:
    """--size "layers=2,seq=32" -> (("layers", 2), ("seq", 32))."""
    if not text:
        return ()
    pairs = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise BadInput(f"--size: expected NAME=VALUE pairs, e.g. layers=2,seq=32; got {part!r}")
        if name not in known:
            raise BadInput(f"--size: unknown knob {name!r}{_suggest(name, known)}; knobs: {', '.join(sorted(known))}")
        try:
            v = int(value)
        except ValueError:
            raise BadInput(f"--size: {name}={value!r} is not a whole number") from None
        if v < 1:
            raise BadInput(f"--size: {name} must be at least 1")
        pairs[name] = v
    return tuple(sorted(pairs.items()))
