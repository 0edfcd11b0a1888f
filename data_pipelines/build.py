"""Builds one of the project's datasets to ArrayRecord (TensorFlow-free stand-in for `tfds build`).

  python -m data_pipelines.build NAME[/CONFIG] --data_dir DIR [--manual_dir DIR]
      [--set key=value ...] [--config_name NEW] [--beam_pipeline_options=OPT,OPT,...]

NAME: video_folder, voxceleb2, hdtf, celebv_hq (raw videos in --manual_dir, layouts in each
builder's docstring) or synth_faces (generated; no --manual_dir). CONFIG: one of the builder's
preset configs (default: the first). ``--set`` changes fields of the preset (e.g.
``--set crop_size=256 --set arcface_model=/models/arcface.onnx``); a changed config must get
its own ``--config_name`` so that its data cannot be mistaken for the preset's.
``--beam_pipeline_options`` runs the generation on Apache Beam (e.g.
``--beam_pipeline_options=--runner=DirectRunner,--direct_num_workers=8,--direct_running_mode=multi_processing``
locally, or a Dataflow / Flink / Spark runner's options at scale).

`tfds build` itself needs TensorFlow, which the project does not; this does the same through
the builders' `download_and_prepare`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def _builders() -> dict:
    from data_pipelines.celebv_hq import CelebvHq
    from data_pipelines.hdtf import Hdtf
    from data_pipelines.synth_faces import SynthFacesBuilder
    from data_pipelines.video_folder import VideoFolder
    from data_pipelines.voxceleb2 import Voxceleb2
    return {"video_folder": VideoFolder, "voxceleb2": Voxceleb2, "hdtf": Hdtf,
            "celebv_hq": CelebvHq, "synth_faces": SynthFacesBuilder}


class BuildError(ValueError):
    pass


def _parse_value(field: dataclasses.Field, text: str):
    """``text`` as the type of ``field``'s default (bool/int/float/str/None/tuple)."""
    default = field.default
    if default is None and text.lower() in ("none", "null"):
        return None
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise BuildError(f"--set {field.name}={text}: expected true or false")
        return text.lower() in ("true", "1")
    try:
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(float(x) for x in text.split(","))
    except ValueError as e:
        raise BuildError(f"--set {field.name}={text}: {e}") from e
    return text


def make_config(builder_cls, preset: str | None, settings: list[str], config_name: str | None):
    presets = {c.name: c for c in builder_cls.BUILDER_CONFIGS}
    if preset and preset not in presets:
        raise BuildError(f"{builder_cls.name} has no config {preset!r}; presets: {sorted(presets)}")
    base = presets[preset] if preset else builder_cls.BUILDER_CONFIGS[0]
    if not settings:
        if config_name:
            raise BuildError("--config_name names a changed config; give --set key=value too")
        return base
    if not config_name or config_name in presets:
        raise BuildError(f"a config changed with --set needs a new --config_name (not one of "
                         f"the presets {sorted(presets)})")
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise BuildError(f"--set {item!r}: expected key=value")
        if key not in fields or key in ("name", "version", "release_notes", "supported_versions",
                                        "description", "tags"):
            known = sorted(k for k in fields if k not in ("name", "version", "release_notes",
                                                          "supported_versions", "tags"))
            raise BuildError(f"--set {key}: not a field of {builder_cls.name}'s config; "
                             f"fields: {known}")
        changes[key] = _parse_value(fields[key], value)
    return dataclasses.replace(base, name=config_name,
                               description=f"{base.name} with {changes}", **changes)


def build(args) -> str:
    import tensorflow_datasets as tfds

    name, _, preset = args.dataset.partition("/")
    builders = _builders()
    if name not in builders:
        raise BuildError(f"unknown dataset {name!r}; one of {sorted(builders)}")
    builder_cls = builders[name]
    config = make_config(builder_cls, preset or None, args.set, args.config_name)
    needs_manual = name != "synth_faces"
    if needs_manual and not args.manual_dir:
        raise BuildError(f"{name} is built from your own copy of its videos: pass --manual_dir")
    beam_options = None
    if args.beam_pipeline_options:
        from apache_beam.options.pipeline_options import PipelineOptions
        beam_options = PipelineOptions(args.beam_pipeline_options.split(","))
    builder = builder_cls(config=config, data_dir=args.data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=args.manual_dir, beam_options=beam_options))
    return str(builder.data_path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_pipelines.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="NAME or NAME/CONFIG")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--manual_dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--config_name")
    p.add_argument("--beam_pipeline_options", default="")
    args = p.parse_args(argv)
    try:
        path = build(args)
    except BuildError as e:
        print(f"build: {e}", file=sys.stderr)
        return 2
    print(f"built {args.dataset} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
