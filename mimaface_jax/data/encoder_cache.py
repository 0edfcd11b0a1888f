"""The encoder cache of a dataset split: frozen-encoder outputs stored beside the records.

Written by ``data_pipelines/common/cache_pass.py`` (``python -m data_pipelines.cache_pass``),
read by ``pipeline.py`` with ``PipelineConfig(use_cache=True)``. This module is the schema both
sides share: where a cache lives, what a record holds, and how a cache is matched to its data.

Location: ``<dataset version folder>/encoder_cache/<split>/`` by default
(``default_cache_dir``), or any folder given as ``DatasetSource.cache``. It holds
``cache_info.json`` (``CACHE_INFO_FILE``) and two ArrayRecord file sets (uncompressed):
  ``<split>.moments.array_record-*``      one record per CLIP; record ``i`` belongs to dataset
                                          record ``i`` (same order)
  ``<split>.clip_tokens.array_record-*``  one record per FRAME, clips in the same order: frame
                                          ``t`` of clip ``i`` is record ``tokens_offset + t``
                                          (``tokens_offset`` is in clip ``i``'s header)
Why the tokens are per frame: a training sample needs the tokens of ONE source frame, and a
clip's tokens are large (ViT-L/14, fp16: 514 KiB per frame, ~33 MB for a 64-frame clip);
reading them per clip made the cached read slower than decoding the JPEGs (bench/encoder_cache.py).

Record encoding (``serialize_record``): a JSON header (key, tokens_offset, each array's dtype,
shape and offset) then the raw arrays, 64-byte aligned: a reader takes zero-copy views and
copies only the frames it picks. For a clip of T frames at the cache's resolution R (= the
pipeline's output resolution), a VAE of downsample factor f and C latent channels:
  clip record
    moments       (T, R/f, R/f, 2C)  the VAE posterior of every frame: ``concat([mean, logvar],
                                     -1)`` (logvar clamped as in ``AutoencoderKL.encode``);
                                     UNSCALED (multiply a latent drawn from them by the VAE's
                                     ``scaling_factor``, stored in the info)
    cond_moments  (T, R/f, R/f, 2C)  the same for the condition image of every frame (only when
                                     the info says ``condition``)
    header: key ``video_id|clip_id|num_frames`` of the dataset record (checked against the
    record on every read), tokens_offset
  frame record
    clip_tokens   (L, D)             CLIP vision last hidden state of the frame (every frame can
                                     be a source frame for some window), L = 1 + (S/P)^2
    header: key ``<clip key>#<t>``
Dtypes are the info's ``moments_dtype`` / ``tokens_dtype`` (float16 by default).

A cache is refused at read time (``CacheMismatchError``) when its ``source_fingerprint``
(``dataset_fingerprint``: metadata.json, the split's entry in dataset_info.json, the split's
file names and sizes) or its record count differs from the dataset it is opened for, and a
record whose ``key`` does not match its dataset record is refused too.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import struct
from typing import Any

import numpy as np

CACHE_FORMAT = "mimaface-encoder-cache-v1"
CACHE_DIRNAME = "encoder_cache"
CACHE_INFO_FILE = "cache_info.json"

MOMENTS = "moments"
COND_MOMENTS = "cond_moments"
CLIP_TOKENS = "clip_tokens"
KEY = "key"
_MAGIC = b"MFEC"
WRITER_OPTIONS = "group_size:1,uncompressed"  # random access; no decompression on read
_ALIGN = 64


class EncoderCacheError(RuntimeError):
    """A cache that cannot be written or read (missing, already there, malformed)."""


class CacheMismatchError(EncoderCacheError):
    """A cache that does not belong to the dataset split it is opened for."""


def default_cache_dir(dataset_path: str, split: str) -> str:
    return os.path.join(dataset_path, CACHE_DIRNAME, split)


def cache_file_name(split: str, kind: str, shard: int, num_shards: int) -> str:
    """``kind``: ``MOMENTS`` (per-clip records) or ``CLIP_TOKENS`` (per-frame records)."""
    return f"{split}.{kind}.array_record-{shard:05d}-of-{num_shards:05d}"


def split_files(dataset_path: str, split: str) -> list[str]:
    """The split's ArrayRecord files of a TFDS version folder (sorted)."""
    return sorted(glob.glob(os.path.join(dataset_path, f"*-{split}.array_record-*")))


def dataset_fingerprint(dataset_path: str, split: str) -> str:
    """sha256 over what identifies a split's content without reading it: the dataset's
    metadata.json, the split's entry of dataset_info.json (record counts per shard, bytes),
    and the names and sizes of the split's files. Independent of where the folder lies."""
    h = hashlib.sha256()
    with open(os.path.join(dataset_path, "metadata.json"), "rb") as f:
        h.update(f.read())
    with open(os.path.join(dataset_path, "dataset_info.json"), encoding="utf-8") as f:
        info = json.load(f)
    entries = [s for s in info.get("splits", []) if s.get("name") == split]
    if not entries:
        raise EncoderCacheError(f"{dataset_path}: dataset_info.json has no split {split!r}")
    h.update(json.dumps(entries[0], sort_keys=True).encode())
    files = split_files(dataset_path, split)
    if not files:
        raise EncoderCacheError(f"{dataset_path}: no ArrayRecord files of split {split!r}")
    for path in files:
        h.update(f"{os.path.basename(path)}:{os.path.getsize(path)}\n".encode())
    return h.hexdigest()


def record_key(rec: dict) -> str:
    """The identity of a dataset record that a cache record must carry."""
    def text(v):
        return v.decode() if isinstance(v, bytes) else str(v)
    return f"{text(rec['video_id'])}|{text(rec['clip_id'])}|{int(rec['num_frames'])}"


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def serialize_record(key: str, arrays: dict[str, np.ndarray], **header_fields) -> bytes:
    """``MFEC`` | header length (uint32 LE) | JSON header | padding | aligned raw arrays."""
    layout, offset = {}, 0
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    for name, a in arrays.items():
        layout[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        offset = _aligned(offset + a.nbytes)
    header = json.dumps({KEY: key, **header_fields, "arrays": layout}).encode()
    start = _aligned(8 + len(header))
    out = bytearray(start + offset)
    out[:8] = _MAGIC + struct.pack("<I", len(header))
    out[8:8 + len(header)] = header
    for name, a in arrays.items():
        begin = start + layout[name]["offset"]
        out[begin:begin + a.nbytes] = a.tobytes()
    return bytes(out)


def deserialize_record(blob: bytes, where: str) -> dict[str, Any]:
    """-> {KEY: str, other header fields, name: read-only array view into ``blob``}."""
    if blob[:4] != _MAGIC:
        raise EncoderCacheError(f"{where}: not an encoder cache record (bad magic); the cache is "
                                "damaged, delete it and run the cache pass again")
    (size,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8:8 + size])
    start = _aligned(8 + size)
    out: dict[str, Any] = {k: v for k, v in header.items() if k != "arrays"}
    for name, spec in header.pop("arrays").items():
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        out[name] = np.frombuffer(blob, dtype, count, start + spec["offset"]).reshape(spec["shape"])
    return out


def array_sha256(arrays: dict[str, Any]) -> str:
    """sha256 over named arrays (sorted names, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def expression_basis_sha256(basis) -> str:
    """Fingerprint of an ``ExpressionPCA`` (the condition renders of FaceMesh records depend on it)."""
    return array_sha256({"mean": basis.mean, "components": basis.components,
                         "stddev": basis.stddev, "whiten": np.asarray(basis.whiten)})


@dataclasses.dataclass
class EncoderCache:
    """An opened, validated cache: ``info`` (cache_info.json) and random access by record index."""

    path: str
    info: dict
    moments: Any          # grain ArrayRecordDataSource, one record per clip
    tokens: Any           # grain ArrayRecordDataSource, one record per frame

    def __len__(self) -> int:
        return len(self.moments)

    @property
    def resolution(self) -> int:
        return int(self.info["resolution"])

    @property
    def has_condition(self) -> bool:
        return bool(self.info["condition"])

    def _mismatch(self, where: str, what: str, got: str, want: str) -> CacheMismatchError:
        return CacheMismatchError(
            f"{where}: the cache {what} in {self.path} is for {got!r} but the dataset record is "
            f"{want!r}; the cache was made from another version of the data. Delete it and run "
            "`python -m data_pipelines.cache_pass` again")

    def read(self, index: int, rec: dict, where: str,
             token_frames=None) -> dict[str, Any]:
        """Clip ``index`` of the cache, checked against its dataset record ``rec``:
        ``moments`` (T, h, w, 2C) [and ``cond_moments``] as read-only views, and
        ``clip_tokens`` (len(token_frames), L, D) of the frames ``token_frames`` (default all)."""
        out = deserialize_record(self.moments[index], f"{self.path} clip record {index}")
        want = record_key(rec)
        if out[KEY] != want:
            raise self._mismatch(where, f"clip record {index}", out[KEY], want)
        if MOMENTS not in out or (self.has_condition and COND_MOMENTS not in out):
            raise EncoderCacheError(f"{self.path} clip record {index}: moments missing; the "
                                    "cache is damaged, delete it and run the cache pass again")
        frames = range(len(out[MOMENTS])) if token_frames is None else token_frames
        tokens = []
        for t in frames:
            i = int(out["tokens_offset"]) + int(t)
            frame = deserialize_record(self.tokens[i], f"{self.path} token record {i}")
            if frame[KEY] != f"{want}#{int(t)}":
                raise self._mismatch(where, f"token record {i}", frame[KEY], f"{want}#{int(t)}")
            tokens.append(frame[CLIP_TOKENS])
        out[CLIP_TOKENS] = np.stack(tokens)
        return out


def open_cache(cache_dir: str, dataset_path: str, split: str, num_records: int) -> EncoderCache:
    """Opens the cache of ``dataset_path`` / ``split`` in ``cache_dir`` and checks that it
    belongs to it (format, split, record count, source fingerprint)."""
    import grain

    info_path = os.path.join(cache_dir, CACHE_INFO_FILE)
    if not os.path.isfile(info_path):
        raise EncoderCacheError(
            f"no encoder cache at {cache_dir} (no {CACHE_INFO_FILE}) for {dataset_path} split "
            f"{split!r}; make one with `python -m data_pipelines.cache_pass --data_dir ... "
            "--dataset ... --split ... --pretrained ...`, or set use_cache=False")
    with open(info_path, encoding="utf-8") as f:
        info = json.load(f)
    if info.get("format") != CACHE_FORMAT:
        raise EncoderCacheError(f"{info_path}: format {info.get('format')!r}, expected "
                                f"{CACHE_FORMAT!r}")
    source = info["source"]
    problems = []
    if source["split"] != split:
        problems.append(f"it caches split {source['split']!r}, not {split!r}")
    if int(source["num_records"]) != num_records:
        problems.append(f"it has {source['num_records']} records, the split has {num_records}")
    fingerprint = dataset_fingerprint(dataset_path, split)
    if source["fingerprint"] != fingerprint:
        problems.append(f"its source fingerprint {source['fingerprint'][:16]}... differs from "
                        f"the dataset's {fingerprint[:16]}... (it was made from "
                        f"{source['path']})")
    if problems:
        raise CacheMismatchError(
            f"the encoder cache {cache_dir} does not belong to {dataset_path} split {split!r}: "
            f"{'; '.join(problems)}. Run the cache pass for this dataset (into a new folder) "
            "or point DatasetSource.cache at its own cache")
    sources = {}
    for kind, count in ((MOMENTS, num_records), (CLIP_TOKENS, int(info["frames"]))):
        files = [os.path.join(cache_dir, name) for name in info["files"][kind]]
        absent = [p for p in files if not os.path.isfile(p)]
        if absent:
            raise EncoderCacheError(f"{cache_dir}: cache files missing: {absent}")
        sources[kind] = grain.sources.ArrayRecordDataSource(files)
        if len(sources[kind]) != count:
            raise EncoderCacheError(
                f"{cache_dir}: its {kind} files hold {len(sources[kind])} records, its info "
                f"says {count}; the cache is damaged, delete it and rebuild it")
    return EncoderCache(path=cache_dir, info=info, moments=sources[MOMENTS],
                        tokens=sources[CLIP_TOKENS])
