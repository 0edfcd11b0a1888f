"""The video U-Net's training step on CPU: this project (JAX) vs diffusers' ``UNetMotionModel`` (PyTorch).

One small video U-Net (3 levels 64/128/128, one layer per block, cross-attention in the two
upper levels, AnimateDiff motion modules, 8.3 M parameters) is built ONCE with diffusers
(``UNet2DConditionModel`` + ``MotionAdapter`` -> ``UNetMotionModel``); the same weights go
to :class:`UNet3D` through the project's importer (``importers/unet.py``). Both sides run
fp32, remat off, on the same input: one clip of F = 8 frames of 32x32x4 latents, a 77-token
cross-attention context of width 64 per frame, one timestep per clip.

Timed, interleaved in ONE process (so a load change on the shared machine hits both sides):
* forward: the U-Net's output (JAX: a jitted forward; torch: under ``torch.no_grad()``);
* step: forward + backward of ``loss = mean(output ** 2)`` with gradients w.r.t. every
  parameter (JAX: jitted ``value_and_grad``; torch: ``loss.backward()`` after
  ``zero_grad(set_to_none=True)``).
Each repetition runs jax-forward, torch-forward, jax-step, torch-step; best and median of the
repetitions are reported with the JAX / torch time ratio (< 1: JAX faster). Compile time is
reported apart. A parity line (max |output difference|, max |gradient difference| of
``conv_in``) shows the two sides compute the same thing.

    .venv/bin/python bench/unet_step_vs_torch.py [--reps 10] [--threads 2]

Threads: torch intra-op threads = ``--threads``; the process is pinned to that many cores,
which bounds XLA's CPU thread pool the same way (XLA sizes it from the cores it may use). The
test suite's fast-compile XLA flags (``tests/xla_flags.py``) are refused: they turn XLA's
optimisation down and would measure a slower program than a user runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

# Pin before jax / torch start their thread pools.
_parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
_parser.add_argument("--reps", type=int, default=10, help="timed repetitions of each case (interleaved)")
_parser.add_argument("--threads", type=int, default=2, help="cores / threads for both frameworks")
_parser.add_argument("--frames", type=int, default=8, help="frames per clip (F)")
_parser.add_argument("--size", type=int, default=32, help="latent height = width")
_parser.add_argument("--batch", type=int, default=1, help="clips per batch (B)")
_parser.add_argument("--context-tokens", type=int, default=77, help="cross-attention tokens per frame")
_parser.add_argument("--components", action="store_true",
                     help="also time the U-Net's parts alone (forward + backward), JAX vs torch")
_parser.add_argument("--no-step", action="store_true", help="skip the whole U-Net (with --components)")
_parser.add_argument("--attention", default="xla", choices=("xla", "chunked"),
                     help="the JAX side's attention implementation (default: the U-Net config's default, xla)")
_parser.add_argument("--chunk", type=int, default=None, help="chunk_q = chunk_kv of --attention chunked")


def _pin(threads: int) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if threads < 1 or threads > len(cores):
        raise SystemExit(f"--threads must be in 1..{len(cores)} (cores this process may use), got {threads}")
    os.sched_setaffinity(0, set(cores[:threads]))


def _refuse_test_flags() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" in flags or "xla_llvm_disable_expensive_passes" in flags:
        raise SystemExit(
            f"XLA_FLAGS={flags!r} turns XLA's CPU optimisation down (the test suite's fast-compile "
            "flags); unset it to measure the program a user runs"
        )


# The benchmarked model (diffusers' argument names). 8.29 M parameters.
WIDTHS = (64, 128, 128)
CONTEXT_DIM = 64
UNET2D = dict(
    sample_size=32, in_channels=4, out_channels=4, block_out_channels=WIDTHS, layers_per_block=1,
    norm_num_groups=32, cross_attention_dim=CONTEXT_DIM, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
ADAPTER = dict(
    block_out_channels=WIDTHS, motion_layers_per_block=1, motion_num_attention_heads=8,
    motion_norm_num_groups=32, motion_max_seq_length=32, use_motion_mid_block=False,
)


def build_models(workdir: str, attention=None):
    """(torch UNetMotionModel, our UNet3D) with the same weights; ``attention``: an
    ``AttentionConfig`` for our side (default: the config's)."""
    import torch
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    from mimaface_jax.importers.unet import import_unet, unet_config_from_checkpoint

    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(**UNET2D)
    adapter = MotionAdapter(**ADAPTER)
    with torch.no_grad():  # the motion modules' zero-initialised output projections get weight
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                p.normal_(0.0, 0.05)
    unet2d.save_pretrained(os.path.join(workdir, "unet"), safe_serialization=True)
    adapter.save_pretrained(os.path.join(workdir, "motion"), safe_serialization=True)
    reference = UNetMotionModel.from_unet2d(unet2d, adapter).train()
    overrides = {} if attention is None else {"attention": attention}
    config = unet_config_from_checkpoint(os.path.join(workdir, "unet"), os.path.join(workdir, "motion"),
                                         in_channels=4, remat_policy="none", **overrides)
    ours = import_unet(os.path.join(workdir, "unet"), os.path.join(workdir, "motion"), config=config)
    return reference, ours


def _components(reference, ours, *, frames: int, context_tokens: int, reps: int) -> list[str]:
    """Markdown rows: forward + backward of single parts of the U-Net, JAX vs torch, same weights.

    Each part is timed alone on random input of the shape it sees in the U-Net (gradients
    w.r.t. its parameters and its input; loss = mean(output ** 2)), interleaved as the step.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import torch.nn.functional as torch_f
    from flax import nnx

    from mimaface_jax.models.attention import plain_attention

    rng = np.random.default_rng(3)
    temb_width = WIDTHS[0] * 4

    def nhwc(n, h, c):
        return rng.standard_normal((n, h, h, c)).astype(np.float32)

    def to_nchw(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))

    ctx = rng.standard_normal((frames, context_tokens, CONTEXT_DIM)).astype(np.float32)
    temb = rng.standard_normal((frames, temb_width)).astype(np.float32)
    parts = []
    for level, size in ((0, 32), (1, 16)):
        down_j, down_t = ours.down_blocks[level], reference.down_blocks[level]
        c_in = down_t.resnets[0].in_channels
        c = WIDTHS[level]
        x_in, x = nhwc(frames, size, c_in), nhwc(frames, size, c)
        parts += [
            (f"GroupNorm {size}x{size}x{c_in}", down_j.resnets[0].norm1, lambda m, a: m(a),
             down_t.resnets[0].norm1, lambda m, a: m(a), [x_in], [to_nchw(x_in)]),
            (f"resnet {size}x{size} {c_in}->{c}", down_j.resnets[0], lambda m, a, t: m(a, t),
             down_t.resnets[0], lambda m, a, t: m(a, t), [x_in, temb], [to_nchw(x_in), torch.from_numpy(temb)]),
            (f"spatial transformer {size}x{size}x{c}", down_j.attentions[0], lambda m, a, k: m(a, k),
             down_t.attentions[0], lambda m, a, k: m(a, encoder_hidden_states=k, return_dict=False)[0],
             [x, ctx], [to_nchw(x), torch.from_numpy(ctx)]),
            (f"motion module {size}x{size}x{c}", down_j.motion_modules[0], lambda m, a: m(a, frames),
             down_t.motion_modules[0], lambda m, a: m(a, num_frames=frames), [x], [to_nchw(x)]),
        ]
    # the bare attention op of the 32x32 spatial self-attention: (frames, 1024 tokens, 8 heads, 8)
    q = rng.standard_normal((3, frames, 32 * 32, 8, WIDTHS[0] // 8)).astype(np.float32)
    qt = [torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1, 3))) for a in q]  # (N, heads, L, D)
    parts.append(("attention op 1024 tokens, 8 heads x 8", None, lambda m, a, b, v: plain_attention(a, b, v),
                  None, lambda m, a, b, v: torch_f.scaled_dot_product_attention(a, b, v), list(q), qt))

    rows = []
    for name, mod_j, call_j, mod_t, call_t, in_j, in_t in parts:
        if mod_j is not None:
            graphdef, params, rest = nnx.split(mod_j, nnx.Param, ...)
        else:
            graphdef, params, rest = None, {}, None

        def loss_j(params, inputs, graphdef=graphdef, rest=rest, call_j=call_j):
            module = None if graphdef is None else nnx.merge(graphdef, params, rest)
            return jnp.mean(call_j(module, *inputs) ** 2)

        step_j = jax.jit(jax.grad(loss_j, argnums=(0, 1))).lower(params, [jnp.asarray(a) for a in in_j]).compile()
        args_j = (params, [jnp.asarray(a) for a in in_j])
        args_t = [a.clone().requires_grad_(a.is_floating_point()) for a in in_t]

        def run_j():
            jax.block_until_ready(step_j(*args_j))

        def run_t(mod_t=mod_t, call_t=call_t):
            if mod_t is not None:
                mod_t.zero_grad(set_to_none=True)
            for a in args_t:
                a.grad = None
            call_t(mod_t, *args_t).pow(2).mean().backward()

        run_j(), run_t()
        tj, tt = [], []
        for _ in range(reps):
            tj.append(timed(run_j))
            tt.append(timed(run_t))
        rows.append(f"| {name} | {min(tj) * 1e3:.1f} | {min(tt) * 1e3:.1f} | {min(tj) / min(tt):.2f} |")
    return rows


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _stats(times: list[float]) -> tuple[float, float]:
    return min(times), statistics.median(times)


def _whole_step(args, reference, ours) -> None:
    """Times the whole U-Net (forward; forward + backward) on both sides and prints the table."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from flax import nnx

    b, f, s = args.batch, args.frames, args.size
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(b, 4, f, s, s, generator=g)  # (B, C, F, H, W)
    ctx_t = torch.randn(b * f, args.context_tokens, CONTEXT_DIM, generator=g)  # (B*F, L, D)
    t_t = torch.randint(0, 1000, (b,), generator=g)
    x_j = jnp.asarray(x_t.permute(0, 2, 3, 4, 1).reshape(b * f, s, s, 4).numpy())  # (B*F, H, W, C)
    ctx_j = jnp.asarray(ctx_t.numpy())
    t_j = jnp.asarray(t_t.numpy())

    graphdef, params, rest = nnx.split(ours, nnx.Param, ...)

    def apply(params, x, t, ctx):
        return nnx.merge(graphdef, params, rest)(x, t, ctx, num_frames=f)

    def loss_fn(params, x, t, ctx):
        return jnp.mean(apply(params, x, t, ctx) ** 2)

    jax_forward = jax.jit(apply)
    jax_step = jax.jit(jax.value_and_grad(loss_fn))

    def torch_forward():
        with torch.no_grad():
            return reference(x_t, t_t, ctx_t).sample

    def torch_step():
        reference.zero_grad(set_to_none=True)
        loss = reference(x_t, t_t, ctx_t).sample.pow(2).mean()
        loss.backward()
        return loss

    start = time.perf_counter()
    compiled_forward = jax_forward.lower(params, x_j, t_j, ctx_j).compile()
    forward_compile = time.perf_counter() - start
    start = time.perf_counter()
    compiled_step = jax_step.lower(params, x_j, t_j, ctx_j).compile()
    step_compile = time.perf_counter() - start

    # parity of what is timed
    out_j = np.asarray(compiled_forward(params, x_j, t_j, ctx_j))
    out_t = torch_forward().permute(0, 2, 3, 4, 1).reshape(b * f, s, s, 4).numpy()
    _, grads = compiled_step(params, x_j, t_j, ctx_j)
    torch_step()
    grad_j = np.asarray(grads["conv_in"]["kernel"][...])  # (3, 3, C_in, C_out)
    grad_t = reference.conv_in.weight.grad.numpy().transpose(2, 3, 1, 0)
    out_diff = float(np.abs(out_j - out_t).max())
    grad_diff = float(np.abs(grad_j - grad_t).max() / max(np.abs(grad_t).max(), 1e-30))

    cases = {
        "jax forward": lambda: compiled_forward(params, x_j, t_j, ctx_j).block_until_ready(),
        "torch forward": torch_forward,
        "jax step": lambda: jax.block_until_ready(compiled_step(params, x_j, t_j, ctx_j)),
        "torch step": torch_step,
    }
    for fn in cases.values():  # warm-up (allocators, thread pools)
        fn()
    times = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, fn in cases.items():
            times[name].append(timed(fn))

    print(f"JAX compile: forward {forward_compile:.1f} s, step {step_compile:.1f} s")
    print(f"parity: max |output diff| {out_diff:.2e}; conv_in gradient max rel diff {grad_diff:.2e}")
    print()
    print("| case | JAX best / median (ms) | PyTorch best / median (ms) | JAX / PyTorch (best) | (median) |")
    print("|---|---|---|---|---|")
    for case in ("forward", "step"):
        jb, jm = _stats(times[f"jax {case}"])
        tb, tm = _stats(times[f"torch {case}"])
        label = "forward" if case == "forward" else "forward + backward"
        print(f"| {label} | {jb * 1e3:.0f} / {jm * 1e3:.0f} | {tb * 1e3:.0f} / {tm * 1e3:.0f} | "
              f"{jb / tb:.2f} | {jm / tm:.2f} |")


def main(argv=None) -> None:
    args = _parser.parse_args(argv)
    if args.reps < 1:
        raise SystemExit(f"--reps must be >= 1, got {args.reps}")
    _pin(args.threads)
    _refuse_test_flags()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import jax
    import torch

    from bench_common import cpu_name

    from mimaface_jax.models.attention import AttentionConfig

    torch.set_num_threads(args.threads)
    attention = AttentionConfig(implementation=args.attention)
    if args.chunk is not None:
        if args.attention != "chunked":
            raise SystemExit("--chunk needs --attention chunked")
        attention = AttentionConfig(implementation="chunked", chunk_q=args.chunk, chunk_kv=args.chunk)
    with tempfile.TemporaryDirectory() as workdir:
        reference, ours = build_models(workdir, attention)
    n_params = sum(p.numel() for p in reference.parameters())
    print(f"CPU: {cpu_name()}; {args.threads} cores / threads per framework; jax {jax.__version__}, "
          f"torch {torch.__version__}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    import mimaface_jax

    print(f"model code: {os.path.dirname(mimaface_jax.__file__)}; JAX attention: {attention}")
    print(f"model: {n_params / 1e6:.2f} M parameters, widths {WIDTHS}; input B={args.batch} x F={args.frames} x "
          f"{args.size}x{args.size}x4, context {args.context_tokens}x{CONTEXT_DIM}; {args.reps} interleaved repetitions")

    if not args.no_step:
        _whole_step(args, reference, ours)
    if args.components:
        print()
        print(f"Parts alone, forward + backward, best of {args.reps} (F = {args.frames} frames):")
        print()
        print("| part | JAX (ms) | PyTorch (ms) | JAX / PyTorch |")
        print("|---|---|---|---|")
        for row in _components(reference, ours, frames=args.batch * args.frames, context_tokens=args.context_tokens,
                               reps=args.reps):
            print(row)


if __name__ == "__main__":
    main()
