"""Test helper: a copy of a TFDS ArrayRecord dataset with chosen records overwritten by bytes
that do not parse (what a truncated write or bit rot leaves)."""

from __future__ import annotations

import shutil
from pathlib import Path

from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter


def corrupt_copy(dataset_dir, out_dir, split: str, indices) -> Path:
    """Copies the version folder ``dataset_dir`` to ``out_dir`` and corrupts ``indices`` of the
    split's (single) ArrayRecord file. Returns the new version folder."""
    out = Path(out_dir)
    shutil.copytree(dataset_dir, out)
    files = sorted(out.glob(f"*-{split}.array_record-*"))
    assert len(files) == 1, files
    reader = ArrayRecordReader(str(files[0]))
    entries = reader.read_all()
    reader.close()
    writer = ArrayRecordWriter(str(files[0]), "group_size:1")
    for i, entry in enumerate(entries):
        writer.write(b"\x08\x96\x01 not a tf.train.Example" * 4 if i in set(indices) else entry)
    writer.close()
    return out
