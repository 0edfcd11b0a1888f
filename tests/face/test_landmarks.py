"""Landmarks on real faces (astronaut, insightface group photo) and tracking through a video."""

import cv2
import numpy as np
import pytest

from mimaface_jax.face.landmarks import (FaceNotFoundError, NUM_LANDMARKS, five_keypoints,
                                         select)
from mimaface_jax.face.media_io import iter_video, read_video


def test_astronaut_one_face_with_plausible_landmarks(landmarker, astronaut):
    faces = landmarker.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    lm = face.landmarks
    assert lm.shape == (NUM_LANDMARKS, 3) and lm.dtype == np.float32
    assert np.isfinite(lm).all() and face.score > 0.5
    # the face of the astronaut is in the upper middle of the image, ~100 px wide
    x0, y0, x1, y1 = face.bbox
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 220 and 70 < x1 - x0 < 130
    kp = five_keypoints(lm)
    inside = ((kp[:, 0] > x0) & (kp[:, 0] < x1) & (kp[:, 1] > y0) & (kp[:, 1] < y1))
    assert inside.all()
    eye_l, eye_r, nose, mouth_l, mouth_r = kp
    assert eye_l[0] < eye_r[0] and mouth_l[0] < mouth_r[0]          # image-left first
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])  # eyes > nose > mouth
    # iris centres lie between their eye corners (33/133 and 362/263)
    assert lm[33, 0] < eye_l[0] < lm[133, 0] and lm[362, 0] < eye_r[0] < lm[263, 0]
    # z is in pixels of the same scale as x: the depth range is a fraction of the face width
    assert 0.2 * (x1 - x0) < np.ptp(lm[:, 2]) < 1.5 * (x1 - x0)


def test_group_photo_several_faces_and_selection(landmarker, group_photo):
    faces = landmarker.detect(group_photo)
    assert len(faces) >= 2
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    first, second = select(faces, 0), select(faces, 1)
    centres = [f.landmarks[:, :2].mean(0) for f in (first, second)]
    assert np.linalg.norm(centres[0] - centres[1]) > 100  # different people
    for f in faces:  # every face's landmarks sit inside its own detector-driven box
        c = f.landmarks[:, :2].mean(0)
        x0, y0, x1, y1 = f.bbox
        assert x0 < c[0] < x1 and y0 < c[1] < y1
    assert select(faces, "largest") is faces[0]
    with pytest.raises(FaceNotFoundError, match=rf"face index 7 does not exist in group.jpg: "
                                                rf"{len(faces)} face\(s\) found"):
        select(faces, 7, source="group.jpg")
    with pytest.raises(FaceNotFoundError, match="no face found in blank.png"):
        select(landmarker.detect(np.full((200, 200, 3), 128, np.uint8)), source="blank.png")


def test_track_video_follows_known_trajectory_and_reports_missing(landmarker, astronaut,
                                                                   synth_video, trajectory):
    VIDEO_FRAMES, BLANK_FRAMES = trajectory.n_frames, trajectory.blank
    path, _ = synth_video
    frames, fps = read_video(path)
    assert frames.shape[0] == VIDEO_FRAMES and fps == pytest.approx(25.0)
    reference = landmarker.detect(astronaut)[0].landmarks
    track = landmarker.track_video(frames)
    assert track.landmarks.shape == (VIDEO_FRAMES, NUM_LANDMARKS, 3)
    assert track.missing_frames == list(BLANK_FRAMES)
    assert np.isnan(track.landmarks[list(BLANK_FRAMES)]).all()
    # every other frame tracked, including those after the blank run (re-acquired)
    errors = []
    for t in np.flatnonzero(track.found):
        m = trajectory.transform(int(t))
        expected = reference[:, :2] @ m[:, :2].T + m[:, 2]
        errors.append(np.abs(track.landmarks[t, :, :2] - expected).mean())
    assert len(errors) == VIDEO_FRAMES - len(BLANK_FRAMES)
    assert max(errors) < 2.0, errors  # mean px error against the warped reference landmarks
    assert track.found[max(BLANK_FRAMES) + 1]
    # a frame iterator (long videos) gives the same result as the decoded array
    streamed = landmarker.track_video(iter_video(path))
    np.testing.assert_array_equal(streamed.found, track.found)
    np.testing.assert_allclose(streamed.landmarks, track.landmarks, atol=1e-3)


def test_track_video_index_selection_in_group_photo(landmarker, group_photo):
    small = cv2.resize(group_photo, (640, 443))
    frames = np.stack([small] * 3)
    faces = landmarker.detect(small)
    for which in (0, 1):
        track = landmarker.track_video(frames, which=which)
        assert track.found.all()
        want = faces[which].landmarks[:, :2].mean(0)
        got = np.nanmean(track.landmarks[:, :, :2], axis=1)
        assert np.abs(got - want).max() < 5.0
