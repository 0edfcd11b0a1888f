"""Streaming mp4 output with the driving video's audio, written atomically.

Frames are encoded as they come (memory does not grow with the video), into a temporary file
next to the output; ``finish`` copies the audio track of ``audio_from`` (its first audio
stream; AAC / MP3 packets are copied, other codecs re-encoded to AAC), closes and renames the
file to its name. Any failure before that removes the temporary file: no partial output.
``lossless``: H.264 RGB at crf 0 (libx264rgb), exact pixels (tests, further processing);
otherwise H.264 yuv420p at crf 18.
"""

from __future__ import annotations

import fractions
import os
from pathlib import Path

import numpy as np

COPY_AUDIO_CODECS = ("aac", "mp3")


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}{path.suffix}")


class VideoOutput:
    def __init__(self, path: str | os.PathLike, fps: float, *, audio_from: str | None = None,
                 lossless: bool = False):
        import av

        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        self.fps, self.lossless, self.audio_from = float(fps), lossless, audio_from
        self.container = av.open(str(self.tmp), mode="w")
        self.stream = None
        self.audio_in = self.audio_stream_in = self.audio_out = None
        self.count = 0
        self.audio = False
        self.closed = self.finished = False

    def _open_streams(self, width: int, height: int):
        import av

        rate = fractions.Fraction(self.fps).limit_denominator(1001)
        if self.lossless:
            self.stream = self.container.add_stream("libx264rgb", rate=rate)
            self.stream.pix_fmt = "rgb24"
            self.stream.options = {"crf": "0", "preset": "veryfast"}
        else:
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "18"}
        self.stream.width, self.stream.height = width, height
        if self.audio_from is not None:
            self.audio_in = av.open(self.audio_from)
            if self.audio_in.streams.audio:
                self.audio_stream_in = self.audio_in.streams.audio[0]
                if self.audio_stream_in.codec_context.name in COPY_AUDIO_CODECS:
                    self.audio_out = self.container.add_stream_from_template(self.audio_stream_in)
                else:
                    self.audio_out = self.container.add_stream("aac", rate=self.audio_stream_in.rate)

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frame {self.count} must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
        if not self.lossless and (frame.shape[0] % 2 or frame.shape[1] % 2):  # yuv420p: even sizes
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
        if self.stream is None:
            self._open_streams(frame.shape[1], frame.shape[0])
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self.container.mux(packet)
        self.count += 1

    def _copy_audio(self) -> None:
        if self.audio_out is None:
            return
        if self.audio_stream_in.codec_context.name in COPY_AUDIO_CODECS:
            for packet in self.audio_in.demux(self.audio_stream_in):
                if packet.dts is None:
                    continue
                packet.stream = self.audio_out
                self.container.mux(packet)
        else:
            for frame in self.audio_in.decode(self.audio_stream_in):
                frame.pts = None
                for packet in self.audio_out.encode(frame):
                    self.container.mux(packet)
            for packet in self.audio_out.encode():
                self.container.mux(packet)
        self.audio = True

    def finish(self) -> dict:
        """Flush, add the audio, close and rename to the output path."""
        if self.stream is None:
            raise ValueError(f"{self.path}: no frames were written")
        for packet in self.stream.encode():
            self.container.mux(packet)
        self._copy_audio()
        self._close()
        os.replace(self.tmp, self.path)
        self.finished = True
        return {"frames": self.count, "fps": self.fps, "audio": self.audio}

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.container.close()
        if self.audio_in is not None:
            self.audio_in.close()

    def abort(self) -> None:
        try:
            self._close()
        finally:
            if self.tmp.exists():
                self.tmp.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None and not self.finished:
            self.abort()
