"""Evaluation outputs: ``metrics.json`` (per sample, mean, settings), ``metrics.md`` (tables) and
PNG plots (per-frame curves with clip boundaries marked; a grid of the worst and best samples)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# (metric, its copy-the-source baseline or None, "higher"/"lower" is better) in table order
TABLE = (
    ("psnr_motion_mask", "psnr_motion_mask_copy_source", "higher"),
    ("psnr", "psnr_copy_source", "higher"),
    ("ssim", "ssim_copy_source", "higher"),
    ("l1", "l1_copy_source", "lower"),
    ("l1_motion_mask", "l1_motion_mask_copy_source", "lower"),
    ("interclip_discontinuity", "interclip_discontinuity_ground_truth", "lower"),
    ("flicker", "flicker_ground_truth", "lower"),
    ("identity_similarity", None, "higher"),
    ("aed", None, "lower"),
    ("apd_degrees", "apd_degrees_copy_source", "lower"),
    ("gaze_error", "gaze_error_copy_source", "lower"),
    ("expression_shape_error", "expression_shape_error_copy_source", "lower"),
    ("landmark_jitter", "landmark_jitter_driving", "lower"),
    ("landmark_jitter", "landmark_jitter_ground_truth", "lower"),
)
RANK_BY = "psnr_motion_mask"


def table_entries(mean: dict) -> list[tuple[str, str | None, str]]:
    """The TABLE rows for these metrics: one per metric present, with the baseline it has (the
    landmark jitter's is the driving video's or the ground truth's)."""
    out = []
    for name, base, better in TABLE:
        if name not in mean or any(entry[0] == name for entry in out):
            continue
        alternatives = [b for n, b, _ in TABLE if n == name and b is not None and b in mean]
        out.append((name, alternatives[0] if alternatives else base, better))
    return out


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def mean_metrics(rows: list[dict]) -> dict:
    """Mean of every metric over the samples where it is finite (NaN when none is)."""
    names = sorted({k for r in rows for k in r["metrics"]})
    out = {}
    for k in names:
        values = [r["metrics"][k] for r in rows if k in r["metrics"] and math.isfinite(r["metrics"][k])]
        out[k] = float(np.mean(values)) if values else float("nan")
    return out


def format_value(value) -> str:
    """A metric for a table: 4 decimals below 10, else 2; "n/a" for missing or non-finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def baseline_name(key: str) -> str:
    """The short name of a baseline metric key ("psnr_copy_source" -> "copy")."""
    for suffix, name in (("copy_source", "copy"), ("ground_truth", "ground truth"), ("driving", "driving")):
        if key.endswith(suffix):
            return name
    return key


def markdown(doc: dict) -> str:
    mean = doc["mean"]
    split = doc["settings"].get("split")
    where = f"`{doc['settings']['data']}` split `{split}`" if split else f"pairs of `{doc['settings']['data']}`"
    lines = [f"# Evaluation: {doc['settings']['model']['path']}", "",
             f"Data: {where}, {len(doc['samples'])} "
             f"{doc['settings']['task_kind']}-reenactment videos of "
             f"{'/'.join(str(n) for n in sorted({r['frames'] for r in doc['samples']}))} frames "
             f"(clips of {doc['settings']['clip_frames']}); ablation: {doc['settings']['ablation'] or 'none'}.", "",
             "| metric | model | baseline | better |", "|---|---|---|---|"]
    for name, base, better in table_entries(mean):
        base_label = "-" if base is None else f"{format_value(mean.get(base))} ({baseline_name(base)})"
        lines.append(f"| {name} | {format_value(mean[name])} | {base_label} | {better} |")
    lines += ["", "Baselines: *copy* = the source frame repeated; for the temporal metrics the ground-truth "
              "video (or the driving video for landmark jitter) measured the same way.", "",
              "| sample | " + " | ".join(n for n, _, _ in TABLE[:4]) + " |",
              "|---" * 5 + "|"]
    for r in doc["samples"]:
        lines.append(f"| {r['task']} | " + " | ".join(format_value(r["metrics"].get(n)) for n, _, _ in TABLE[:4]) + " |")
    if doc["skipped"]:
        lines += ["", "Not computed:", ""] + [f"- {k}: {v}" for k, v in doc["skipped"].items()]
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, row: dict) -> None:
    """Per-frame PSNR in the motion mask (vs copy-the-source), SSIM and frame-to-frame change
    (vs the ground truth) of one sample, clip boundaries as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = row["curves"]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    panels = ((("psnr_motion_mask", "generated"), ("psnr_motion_mask_copy_source", "copy source")),
              (("ssim", "generated"),),
              (("frame_change", "generated"), ("frame_change_ground_truth", "ground truth")))
    labels = ("PSNR in motion mask (dB)", "SSIM", "mean |F[t] - F[t-1]|")
    for ax, panel, label in zip(axes, panels, labels):
        drawn = [key for key, _ in panel if c.get(key)]   # no truth: no PSNR / SSIM curves
        for key, name in panel:
            if key in drawn:
                ax.plot(range(len(c[key])), c[key], marker=".", label=name)
        for s in row["clip_starts"][1:]:
            ax.axvline(s - 0.5, color="gray", linestyle="--", linewidth=0.8)
        ax.set_ylabel(label)
        if drawn:
            ax.legend(fontsize=7)
    axes[-1].set_xlabel("frame (dashed: clip boundary)")
    fig.suptitle(row["task"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def worst_best_grid(rows: list[dict], videos: list[tuple[np.ndarray, np.ndarray]], max_frames: int = 8) -> np.ndarray:
    """(H', W', 3) uint8: for the worst and the best sample by ``RANK_BY``, a row of generated
    frames over a row of ground-truth frames (source frame first in both rows; no truth row for
    a sample without one, truth None; samples without ``RANK_BY`` keep their order)."""
    order = sorted(range(len(rows)), key=lambda i: np.nan_to_num(rows[i]["metrics"].get(RANK_BY, np.nan), nan=-1e9))
    picks = [order[0]] if len(order) == 1 else [order[0], order[-1]]
    blocks = []
    for i in picks:
        source, generated, truth = videos[i]
        k = min(max_frames, len(generated))
        blocks.append(np.concatenate([source] + list(generated[:k]), axis=1))
        if truth is not None:
            blocks.append(np.concatenate([source] + list(truth[:k]), axis=1))
    scale = max(1, -(-96 // blocks[0].shape[0]))   # small crops: tiles of >= 96 pixels
    blocks = [np.repeat(np.repeat(b, scale, 0), scale, 1) for b in blocks]
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0))) for b in blocks]
    return np.concatenate(blocks, axis=0)


def write_report(out: Path, settings: dict, rows: list[dict], skipped: dict,
                 videos: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Writes metrics.json, metrics.md, curves_<i>.png, worst_best.png into ``out``; returns the
    JSON document. ``videos[i]`` = (source (H, W, 3), generated (T, H, W, 3), truth or None) of row i."""
    from mimaface_jax.face.media_io import write_image

    out.mkdir(parents=True, exist_ok=True)
    samples = [{k: v for k, v in r.items()} for r in rows]
    doc = {"settings": settings, "mean": mean_metrics(rows), "samples": samples, "skipped": skipped,
           "plots": [f"curves_{i}.png" for i in range(len(rows))] + ["worst_best.png"],
           "worst_best": "rows: worst sample by psnr_motion_mask (generated, ground truth), then the best"
           if any(RANK_BY in r["metrics"] for r in rows) else
           "rows: the first sample's generated frames, then the last's (no ground truth to rank them by)"}
    (out / "metrics.json").write_text(json.dumps(_finite_or_none(doc), indent=1))
    (out / "metrics.md").write_text(markdown(doc))
    for i, row in enumerate(rows):
        plot_curves(out / f"curves_{i}.png", row)
    write_image(out / "worst_best.png", worst_best_grid(rows, videos))
    return doc
