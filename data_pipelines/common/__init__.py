"""Code shared by the face-video TFDS builders: split assignment, features, preprocessing."""
