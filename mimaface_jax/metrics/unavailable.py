"""Metrics of the field this code does not compute, and why (written into metrics.json/.md)."""

SKIPPED = {
    "lpips": "the `lpips` package ships only its linear heads and loads the VGG/AlexNet "
             "backbone through torchvision's pretrained download (no offline weights; torchvision is not "
             "in the pinned set either)",
    "fid": "needs Inception weights from the user's files with a parity check (not built yet)",
    "fvd": "needs I3D weights from the user's files with a parity check (not built yet)",
}
