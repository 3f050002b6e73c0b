"""``distillguard classify``: score prompts for training-data elicitation (CONTRACT §5)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn, TextIO

import typer

BATCH = 8192

CLASSIFY_HELP = "\n\n".join(
    " ".join(paragraph.split())
    for paragraph in (
        """Score each prompt for attempts to harvest training data from the model.""",
        """'elicitation' (0..1) is how strongly a prompt tries to obtain reasoning traces or
        training data: chain-of-thought elicitation, "generate N examples with solutions",
        rubric grading for reward data, reasoning-reveal tricks, censorship-safe rewrites,
        agent-trajectory harvesting. 'capability' is the task domain (coding, math, agentic,
        data_analysis, writing, translation, science, chat). 'signals' names the rule
        families that fired ('context:...' ones are benign settings such as benchmark
        harnesses; 'lexical' means the n-gram model alone would flag it). 'flagged' applies
        the threshold. Runs offline; English and Chinese.""",
        """Bad input lines (broken JSON, no prompt) are reported as FILE:LINE on stderr,
        counted, and skipped; the run continues.""",
    )
)


def register(app: typer.Typer) -> None:
    @app.command("classify", help=CLASSIFY_HELP)
    def classify(
        input_path: Annotated[
            Path,
            typer.Option(
                "--in", help='JSON Lines: one {"id", "prompt", "system_prompt"?} per line.'
            ),
        ],
        output_path: Annotated[
            Path,
            typer.Option(
                "--out",
                help='JSON Lines written here: {"id", "elicitation", "capability", "signals", '
                '"flagged"}.',
            ),
        ],
        threshold: Annotated[
            float | None,
            typer.Option(
                help="Flag threshold on the elicitation scale. Default: the one stored with "
                "the weights (0.5, set for <= 1% flags on held-out benign prompts).",
            ),
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        # The help text is CLASSIFY_HELP (paragraphs without hard wraps, so Rich can reflow).
        from distillguard.cli import console
        from distillguard.errors import InputError

        try:
            src = input_path.open("rb")
        except OSError as err:
            raise_error(InputError(f"cannot read input: {err.strerror}", source=str(input_path)))
        try:
            dst = output_path.open("w", encoding="utf-8")
        except OSError as err:
            raise_error(InputError(f"cannot write output: {err.strerror}", source=str(output_path)))
        with src, dst:
            done, bad = _run(src, dst, str(input_path), threshold, quiet, console.file)
        console.print(f"classified {done} prompts, {bad} bad lines skipped -> {output_path}")


def raise_error(err: Exception) -> NoReturn:
    from distillguard.cli import console

    console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _parse(raw: bytes) -> tuple[Any, str, str | None] | str:
    """(id, prompt, system_prompt) of one line, or the reason it is bad."""
    import orjson

    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        return f"broken JSON ({err.args[0].split(':')[0]})"
    if not isinstance(row, dict):
        return "not a JSON object"
    prompt = row.get("prompt")
    if not isinstance(prompt, str):
        return "missing prompt" if prompt is None else "prompt is not a string"
    system = row.get("system_prompt")
    if system is not None and not isinstance(system, str):
        return "system_prompt is not a string"
    return row.get("id"), prompt, system


def _run(
    src: Any, dst: TextIO, name: str, threshold: float | None, quiet: bool, err_out: IO[str]
) -> tuple[int, int]:
    import os

    import orjson
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from distillguard.content import ElicitationClassifier

    clf = ElicitationClassifier(threshold=threshold)
    total = os.fstat(src.fileno()).st_size if hasattr(src, "fileno") else 0
    done = bad = 0
    ids: list[Any] = []
    prompts: list[str] = []
    systems: list[str | None] = []

    def flush() -> None:
        nonlocal done
        if not ids:
            return
        s = clf.score(prompts, systems)
        names, sig_names = s.capability_names, s.signal_names
        lines = []
        for i, id_ in enumerate(ids):
            mask = int(s.signals[i])
            lines.append(
                orjson.dumps(
                    {
                        "id": id_,
                        "elicitation": round(float(s.elicitation[i]), 6),
                        "capability": names[int(s.capability[i])],
                        "signals": [n for b, n in enumerate(sig_names) if mask >> b & 1],
                        "flagged": bool(s.flagged[i]),
                    }
                ).decode()
            )
        dst.write("\n".join(lines) + "\n")
        done += len(ids)
        ids.clear()
        prompts.clear()
        systems.clear()

    with Progress(
        TextColumn("classify"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        disable=quiet or total < 1 << 20,
        transient=True,
    ) as progress:
        task = progress.add_task("classify", total=total or None)
        for lineno, raw in enumerate(src, start=1):
            progress.advance(task, len(raw))
            if not raw.strip():
                continue
            parsed = _parse(raw)
            if isinstance(parsed, str):
                bad += 1
                print(f"{name}:{lineno}: {parsed}", file=err_out or sys.stderr)
                continue
            ids.append(parsed[0])
            prompts.append(parsed[1])
            systems.append(parsed[2])
            if len(ids) >= BATCH:
                flush()
        flush()
    return done, bad
