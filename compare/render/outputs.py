"""Every output format threadbench writes, in one table: which commands write it, and what a reader gets.
report, diff, plot and publish check a format here, and the CLI's help is built from it; each command then
renders through its own function for that name. A new format is one entry here and one function in each
command that writes it. Plain data: imports nothing heavy (the CLI's --help reads it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..options import BadInput


@dataclass(frozen=True)
class OutputFormat:
    name: str                   # as --format takes it, or a plot file's suffix
    summary: str                # what a reader gets (--help)
    commands: tuple[str, ...]   # the commands that write it
    image: bool = False         # a plot: its format is the output file's suffix
    metadata: dict = field(default_factory=dict)   # images: savefig metadata that drops the date and software
    #                                                stamps, so an unchanged plot re-renders byte-identical


OUTPUTS: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("table", "rich tables, the default", ("report", "diff")),
    OutputFormat("markdown", "the tables as markdown", ("report", "diff", "publish")),
    OutputFormat("csv", "one row per cell", ("report", "diff")),
    OutputFormat("json", "one document for other tools; report reads its own back", ("report", "diff")),
    OutputFormat("png", "a raster image", ("plot", "publish"), image=True, metadata={"Software": None}),
    OutputFormat("svg", "a vector image", ("plot",), image=True, metadata={"Creator": None}),
    OutputFormat("pdf", "a vector document", ("plot",), image=True, metadata={"Creator": None}),
)}
PUBLISHED_PLOT = OUTPUTS["png"]   # publish: a plot per section beside the markdown page


def names(command: str) -> tuple[str, ...]:
    """The formats `command` writes, in table order."""
    return tuple(name for name, spec in OUTPUTS.items() if command in spec.commands)


def check(command: str, name: str) -> OutputFormat:
    """The format `name` of `command`; one that it does not write is bad input naming the ones it does."""
    valid = names(command)
    if name not in valid:
        raise BadInput(f"--format: unknown format {name!r}; valid: {', '.join(valid)}")
    return OUTPUTS[name]


def image_format(path) -> OutputFormat | None:
    """The plot format a file name asks for by its suffix (".PNG" too); None when it names none."""
    spec = OUTPUTS.get(Path(path).suffix.lower().lstrip("."))
    return spec if spec is not None and spec.image else None


def help_text(command: str) -> str:
    """The --format help of `command`: each format with what it gives."""
    return ", ".join(f"{name} ({OUTPUTS[name].summary})" for name in names(command)) + "."
