"""media_io: round trips through real files and specific errors for bad ones."""

import numpy as np
import pytest

from mimaface_jax.face.media_io import (MediaReadError, iter_video, read_image, read_media,
                                        read_video, write_image, write_video)


def _moving_square(t_count=12, h=64, w=80):
    frames = np.zeros((t_count, h, w, 3), np.uint8)
    for t in range(t_count):
        frames[t, 10:30, 4 * t:4 * t + 20] = (200, 60, 30)
    return frames


def test_video_roundtrip_keeps_frames_fps_and_colours(tmp_path):
    frames = _moving_square()
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=12.5)
    back, fps = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps == pytest.approx(12.5)
    # lossy H.264 but close, and colours are RGB (red channel is the bright one)
    assert np.abs(back.astype(int) - frames).mean() < 3.0
    assert back[5, 20, 30, 0] > 150 and back[5, 20, 30, 2] < 80
    # the iterator yields the same frames
    np.testing.assert_array_equal(np.stack(list(iter_video(path))), back)


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = _moving_square(h=63, w=81)
    write_video(tmp_path / "odd.mp4", frames, fps=25)
    back, _ = read_video(tmp_path / "odd.mp4")
    assert back.shape == (12, 64, 82, 3)
    assert np.abs(back[:, :63, :81].astype(int) - frames).mean() < 3.0


def test_image_roundtrip_is_rgb(tmp_path, astronaut):
    write_image(tmp_path / "a.png", astronaut)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), astronaut)
    frames, fps = read_media(tmp_path / "a.png")
    assert frames.shape == (1,) + astronaut.shape and fps is None


def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(MediaReadError, match=r"missing\.png: file does not exist"):
        read_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaReadError, match=r"empty\.mp4: file is empty"):
        read_video(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaReadError, match=r"junk\.mp4: not a readable video"):
        read_video(junk)
    not_image = tmp_path / "text.png"
    not_image.write_text("hello")
    with pytest.raises(MediaReadError, match=r"text\.png: not a readable image"):
        read_image(not_image)


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mp4", np.zeros((0, 8, 8, 3), np.uint8), fps=25)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", np.zeros((2, 8, 8, 3), np.float32), fps=25)
