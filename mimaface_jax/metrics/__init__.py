"""Evaluation metrics of face animation (``python -m mimaface_jax.evaluate``).

One job per module:
  image_quality  PSNR and L1, whole frame and inside a mask
  ssim           SSIM (Gaussian window, the Wang et al. 2004 constants)
  identity       ArcFace cosine similarity of generated faces to the source
  motion_errors  AED / APD / gaze error between two motion sequences (same layout)
  temporal       landmark jitter, background flicker, inter-clip discontinuity
  unavailable    the metrics this code does not compute, with the reason

dm-pix was considered for PSNR / SSIM: it needs ``chex``, which is not in the pinned set, so
PSNR / SSIM are implemented here and tested against ``skimage.metrics``.
"""
