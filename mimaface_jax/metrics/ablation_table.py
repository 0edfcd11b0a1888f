"""The ablation table of ``scripts/ablate.sh``: several ``evaluate`` outputs side by side.

    python -m mimaface_jax.metrics.ablation_table --out docs/RESULTS.md --command "bash scripts/ablate.sh" \
        [--elapsed SECONDS] LABEL=EVAL_DIR [LABEL=EVAL_DIR ...]

Each EVAL_DIR is an ``evaluate --out`` folder (its ``metrics.json``). Every column is a mean over
the same held-out videos, with the copy-the-source baseline (or the ground truth's value for the
temporal metrics) beside it. The runs must have evaluated the same data, split, videos and
frame count, or the table would compare different things: a mismatch is an error. The table
records the command, the machine and the date. It is written between two marker lines: when
``--out`` exists and has them, only the text between them is replaced (the reading of the
numbers around it stays); otherwise the file gets a new block at its end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from mimaface_jax.metrics.report import baseline_name, format_value, table_entries

# settings that must agree between the compared runs
SAME = ("data", "split", "task_kind", "num_videos", "frames")
BEGIN, END = "<!-- ablation table (scripts/ablate.sh): begin -->", "<!-- ablation table: end -->"


class AblationTableError(ValueError):
    """Bad input (one line for the user)."""


def load_runs(items: list[str]) -> list[tuple[str, dict]]:
    """["label=dir", ...] -> [(label, metrics.json document)]; the runs must be comparable."""
    runs = []
    for item in items:
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder:
            raise AblationTableError(f"{item!r}: expected LABEL=EVAL_DIR")
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            raise AblationTableError(f"{item!r}: {path} does not exist (run python -m mimaface_jax.evaluate first)")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise AblationTableError(f"{path}: not valid JSON ({err})") from None
        runs.append((label, doc))
    if not runs:
        raise AblationTableError("no runs given (LABEL=EVAL_DIR ...)")
    first_label, first = runs[0]
    for label, doc in runs[1:]:
        for key in SAME:
            if doc["settings"].get(key) != first["settings"].get(key):
                raise AblationTableError(f"{label!r} evaluated {key}={doc['settings'].get(key)!r} but "
                                         f"{first_label!r} {first['settings'].get(key)!r}: not comparable")
    return runs


def _columns(runs: list[tuple[str, dict]]) -> list[tuple[str, str | None, str]]:
    """The table rows (report.TABLE) of the metrics every run has."""
    return [entry for entry in table_entries(runs[0][1]["mean"])
            if all(_has(doc["mean"].get(entry[0])) for _, doc in runs)]


def _has(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _ablation_of(doc: dict) -> str:
    s = doc["settings"]
    return s.get("ablation") or "none"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def markdown(runs: list[tuple[str, dict]], command: str, elapsed: float | None) -> str:
    columns = _columns(runs)
    first = runs[0][1]["settings"]
    lines = [f"- Command: `{command}`" + (f" ({elapsed / 60:.1f} min in all)" if elapsed else ""),
             f"- Machine: {machine()}",
             f"- Date (UTC): {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}",
             f"- Data: `{first['data']}` split `{first['split']}`, {first['num_videos']} "
             f"{first['task_kind']}-reenactment videos of {first['frames']} frames; each cell is the mean "
             "over them, with the copy-the-source baseline (or, for the temporal metrics, the "
             "ground-truth video's own value) in parentheses.", ""]
    # the motion errors need FaceMesh to find the face in the generated frames: say how often it did not
    faceless = "frames_without_face_generated"
    count = all(_has(doc["mean"].get(faceless)) for _, doc in runs)
    header = ["variant", "evaluate ablation"] + [f"{name} ({better} is better)" for name, _, better in columns]
    header += ["generated frames where FaceMesh found no face (of each video's)"] if count else []
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for label, doc in runs:
        mean = doc["mean"]
        cells = [label, _ablation_of(doc)]
        for name, base, _ in columns:
            cell = format_value(mean[name])
            if base is not None and _has(mean.get(base)):
                cell += f" ({format_value(mean[base])} {baseline_name(base)})"
            cells.append(cell)
        if count:
            cells.append(f"{mean[faceless]:.1f} of {first['frames']}")
        lines.append("| " + " | ".join(cells) + " |")
    skipped = {k: v for _, doc in runs for k, v in doc.get("skipped", {}).items()}
    if skipped:
        lines += ["", "Not computed:", ""] + [f"- {k}: {v}" for k, v in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


def replace_block(old: str, table: str) -> str:
    """``old`` with the text between the markers replaced by ``table`` (appended when absent)."""
    block = f"{BEGIN}\n{table}{END}\n"
    start, end = old.find(BEGIN), old.find(END)
    if start < 0 or end < start:
        return (old.rstrip("\n") + "\n\n" if old.strip() else "") + block
    return old[:start] + block + old[end + len(END):].lstrip("\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mimaface_jax.metrics.ablation_table",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="LABEL=EVAL_DIR (an evaluate --out folder)")
    p.add_argument("--out", required=True, help="markdown file to write")
    p.add_argument("--command", required=True, help="the command that produced the runs (recorded)")
    p.add_argument("--elapsed", type=float, default=None, help="seconds the whole command took")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        runs = load_runs(args.runs)
        text = replace_block(out.read_text() if out.is_file() else "", markdown(runs, args.command, args.elapsed))
    except (AblationTableError, OSError) as err:
        print(f"ablation_table: error: {err}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"wrote {out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
