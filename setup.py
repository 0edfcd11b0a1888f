"""Package metadata. The pinned sets live in requirements/*.txt; scripts/install.sh installs them."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [l.split("#")[0].strip() for l in lines
            if l.split("#")[0].strip() and not l.startswith("-r")]


setup(
    name="mimaface_jax",
    version="0.1.0",
    description="MIMAFace-style diffusion face animation in JAX / Flax NNX",
    python_requires=">=3.11",
    packages=find_packages(include=["mimaface_jax", "mimaface_jax.*", "data_pipelines",
                                    "data_pipelines.*"]),
    package_data={"mimaface_jax.face": ["assets/*.npy"]},
    install_requires=_requirements("runtime.txt"),
    extras_require={
        # PyTorch references used by parity tests and `convert ... --verify`.
        "parity": ["torch==2.13.0", "diffusers==0.39.0"],
        "test": ["torch==2.13.0", "diffusers==0.39.0", "apache-beam==2.77.0", "pytest==9.2.0",
                 "pytest-xdist==3.8.0"],
        # Apache Beam runners for large dataset builds (`tfds build --beam_pipeline_options=...`).
        "beam": ["apache-beam==2.77.0"],
        # TensorFlow for clu's TensorBoard writers and tfds Image/Video features.
        "tf": ["tensorflow-cpu==2.21.0", "tensorboard==2.21.0"],
        # Accelerators (as `scripts/install.sh gpu|tpu`): jax's CUDA 12 plugin matching jaxlib; libtpu
        # for the pinned jax.
        "gpu": _requirements("gpu.txt"),
        "tpu": _requirements("tpu.txt"),
    },
)
