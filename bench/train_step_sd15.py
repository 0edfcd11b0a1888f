"""XLA's memory and FLOP analysis of the SD-1.5-scale train step (abstract, 8 fake CPU devices).

Builds the sharded abstract train state of ``configs/sd15_stage1_image.py`` and
``configs/sd15_stage2_video.py`` (fsdp = 8, global batch 8: one clip per device), lowers the
AOT train step against abstract inputs (no weights are allocated) and compiles it for the CPU
backend; prints ``compiled.memory_analysis()`` (per device: arguments = params + optimizer +
EMA + batch, temporaries = activations and gradients under the config's remat policy) and
``compiled.cost_analysis()`` (FLOPs of one device's program per step). With ``--write`` the
table replaces this bench's section of BENCHMARKS.md.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        .venv/bin/python bench/train_step_sd15.py [--stages video,image] \\
        [--attention xla,chunked] [--remat full,none] [--min-seq-len 256,512] \\
        [--chunk 1024x1024,512x512] [--remat-scope block,layer] [--write]

``--attention`` / ``--remat`` / ``--min-seq-len`` / ``--chunk`` / ``--remat-scope`` are
comma-separated sweeps (every combination is compiled; "config" = the config's own value).
``--chunk QxKV`` sets the ``chunked`` kernel's query / key-value tile sizes
(``attention_chunk_q`` / ``attention_chunk_kv``); ``--remat-scope`` where the remat
checkpoints go (``model.unet.remat_scope``: every U-Net block, or every layer in it). On the
CPU backend ``auto`` is ``chunked``; ``splash`` and ``cudnn`` cannot be compiled for CPU devices.

The CPU backend's buffer assignment stands in for an accelerator's: the numbers show how the
state divides over fsdp and how large the step's working set is, not a TPU/GPU's exact usage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = "## SD-1.5 train step: XLA memory and FLOPs (abstract, 8 fake CPU devices, fsdp = 8)"
CONFIGS = {"image": "sd15_stage1_image", "video": "sd15_stage2_video"}
GIB = 1024 ** 3
NOTE = """
Reading (2026-12-03). Rows 1-3 and 10-11 come from earlier code (2026-12-02, stage defaults of
commit 8d2d3ac, before the GroupNorm revert 4a869b2); rows 4-5 from the block-scope code of
commit b06c27c; rows 6-7 and 12 from b06c27c's first `remat_in_order` (recomputation tied to
the gradient through the inputs only); rows 8-9 and 13 from the commit after it, which also
ties the parameters (commit c6794a7, what the configs run now):
- Issue 14's target (stage 2, `chunked`, at most 32 GiB of temporaries per device) is met by
  the remat scope, not by the chunk size: with one checkpoint per resnet / spatial transformer
  / motion module whose backward passes run in order (`model.unet.remat_scope="layer"`, now
  set in both SD-1.5 configs) the stage-2 step needs 7.84 GiB with XLA's memory-optimized CPU
  scheduler and 22.47 GiB with its default one, against 36.11 GiB (memory-optimized) for one
  checkpoint per U-Net block with the same code (84.84 GiB default, earlier code). Stage 1:
  3.44 GiB (rows 12 and 13; 3.69 per block, earlier code).
- Smaller chunks alone make it slightly worse: 512 x 512 tiles 36.96 GiB vs 36.11 GiB at
  1024 x 1024 (per block, memory-optimized). The score tiles were not what filled the peak;
  the configs keep 1024 x 1024.
- Why the order matters: XLA's CPU compiler expands the optimization barriers of
  `jax.checkpoint` before scheduling, so its scheduler recomputes checkpointed layers early
  and defers their weight-gradient matmuls, keeping every layer's activations live. One SD-1.5
  up block at 64x64 on its own (20 frames, bf16, chunked, memory-optimized; forward +
  backward): one checkpoint around the block 23.9 GiB, `nnx.remat` around each layer
  21.9 GiB, `models/remat_in_order.py` around each layer 7.0 GiB (recomputation depends on
  the output's gradient, the input gradient it returns on its weight gradients), 5.7 GiB when
  the recomputation's parameters depend on it too. Without that, XLA merged the recomputed
  full-size fp32 broadcasts of the norm scales (100 MiB each at 64x64) with the forward's
  and kept them from the forward to the backward (about 30 at 64x64 alone in the live-range
  dump of row 6's peak); tied, the whole step went from 12.81 (row 6) to 7.84 GiB (row 8).
- FLOPs: layer scope recomputes each layer's forward once, as block scope recomputes each
  block's: 121.81 vs 121.67 TFLOP per device (+0.1 %; 1.012 x the plain-attention step);
  stage 1 6.05 vs 6.04 TFLOP. `chunked` itself adds +1.1 % (stage 2) / +1.2 % (stage 1): its
  backward recomputes q k^T once more per tile (9 attention matmul passes per tile under full
  remat instead of 8). The chunked row without a scheduler flag got its jaxpr count from a
  trace of the same code (the run predates that column).
- What remains: with the memory-optimized scheduler (live-range dump of row 6, before the
  parameter tie) the peak lies in the 64x64 up block's backward: the layers' saved inputs
  (bf16, 50-100 MiB each), the current layer's working set (GEGLU buffers fp32 on XLA's CPU
  backend, which computes bf16 matmuls in fp32: 20 x 4096 x 2560 x 4 B = 800 MiB each) and
  the fp32 norm-scale broadcasts now removed. With the default scheduler (dump of row 7) the
  peak is earlier, in the forward: the frozen VAE's encoder activations at 512^2 for the 20
  frames (f32 / bf16 20 x 512 x 512 x 128, 12.5 GiB) overlap the U-Net forward, and the
  fsdp all-gathered fp32 weights of many layers are live at once (~6 GiB); encoding frame by
  frame would be the next lever there.
"""


def parse_chunk(text: str) -> tuple[int, int] | None:
    """"QxKV" -> (Q, KV) positive ints; "config" -> None. Raises ValueError naming the bad value."""
    if text == "config":
        return None
    parts = text.split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--chunk: {text!r} is not QxKV with positive integers (e.g. 512x512) or 'config'")
    return int(parts[0]), int(parts[1])


def load_config(stage: str, attention: str = "config", remat: str = "config", min_seq_len: str = "config",
                chunk: str = "config", remat_scope: str = "config"):
    from mimaface_jax.config_files import load_config as load_file

    c = load_file(REPO / "configs" / f"{CONFIGS[stage]}.py")
    c.mesh.fsdp = 8
    c.data.global_batch_size = 8
    if stage == "video":
        c.init.stage1_checkpoint = tempfile.mkdtemp()  # validated to exist; nothing is read
    if attention != "config":
        c.model.unet.attention_implementation = attention
    if remat != "config":
        c.model.unet.remat_policy = remat
    if min_seq_len != "config":
        c.model.unet.attention_min_seq_len = int(min_seq_len)
    sizes = parse_chunk(chunk)
    if sizes is not None:
        c.model.unet.attention_chunk_q, c.model.unet.attention_chunk_kv = sizes
    if remat_scope != "config":
        c.model.unet.remat_scope = remat_scope
    return c


def _sub_jaxprs(value):
    """Jaxprs held by an equation parameter (a jaxpr, a closed jaxpr, or a tuple of them)."""
    from jax.extend import core as jex_core

    if isinstance(value, jex_core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jex_core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def matmul_flops(jaxpr, counts: dict | None = None) -> float:
    """FLOPs of every dot_general and convolution in ``jaxpr``, loop bodies times their trip count.

    Why not ``compiled.cost_analysis()`` alone: XLA counts a while-loop body ONCE, so any scan
    (the chunked attention's chunk loops) is undercounted by its trip count. Here ``scan``
    bodies are multiplied by ``length``, ``cond`` takes its most expensive branch; a ``while``
    with an unknown trip count is counted once and reported in ``counts["while"]``.
    """
    import math

    counts = {"while": 0} if counts is None else counts
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            out = eqn.outvars[0].aval
            total += 2.0 * out.size * math.prod(lhs[i] for i in lhs_contract)
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            rhs_spec = eqn.params["dimension_numbers"].rhs_spec
            out = eqn.outvars[0].aval
            total += 2.0 * out.size * rhs[rhs_spec[1]] * math.prod(rhs[i] for i in rhs_spec[2:])
        elif name == "scan":
            total += eqn.params["length"] * matmul_flops(eqn.params["jaxpr"].jaxpr, counts)
        elif name == "cond":
            total += max(matmul_flops(b.jaxpr, counts) for b in eqn.params["branches"])
        elif name == "while":
            counts["while"] += 1
            total += matmul_flops(eqn.params["body_jaxpr"].jaxpr, counts)
        else:
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    total += matmul_flops(sub, counts)
    return total


def analyse(stage: str, attention: str = "config", remat: str = "config", min_seq_len: str = "config",
            chunk: str = "config", remat_scope: str = "config") -> dict:
    import jax

    from mimaface_jax.config_validation import validate
    from mimaface_jax.models.attention import resolve_implementation
    from mimaface_jax.parallel import use_rules
    from mimaface_jax.training import mesh_and_model, train_step
    from mimaface_jax.training.abstract_run import abstract_run
    from mimaface_jax.training.model_config import dtype_of

    c = load_config(stage, attention, remat, min_seq_len, chunk, remat_scope)
    u = c.model.unet
    kernel = resolve_implementation(u.attention_implementation, jax.default_backend(),
                                    dtype_of(c.precision.compute_dtype))
    if kernel == "chunked":
        kernel += f" {u.attention_chunk_q}x{u.attention_chunk_kv}"
    validate(c, jax.device_count())
    mesh, rules, model, trainable, frozen, tx, state = abstract_run(c)
    leaves = {f"leaf{i}": x for i, x in enumerate(jax.tree.leaves(state))}
    total, per_device = mesh_and_model.param_bytes(leaves)
    step = train_step.make_train_step(c, model, tx)
    with use_rules(mesh, rules):
        jaxpr = jax.make_jaxpr(step)(state, model.ae_abstract, train_step.abstract_batch(c, mesh, rules))
    counts = {"while": 0}
    jaxpr_flops = matmul_flops(jaxpr.jaxpr, counts) / jax.device_count()
    t0 = time.perf_counter()
    lowered = train_step.compile_train_step(c, model, tx, state, mesh, rules)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    s = c.model.num_frames + c.model.ica.k_max
    return {
        "stage": stage, "config": CONFIGS[stage],
        "params": sum(x.size for x in model.abstract_params.values()),
        "trainable": sum(model.abstract_params[n].size for n in trainable),
        "state_total": total, "state_per_device": per_device,
        "batch": f"{c.data.global_batch_size} x {s} frames x {c.data.resolution}^2",
        "remat": c.model.unet.remat_policy, "remat_scope": c.model.unet.remat_scope, "dtype": c.precision.compute_dtype,
        "attention": u.attention_implementation, "kernel": kernel, "min_seq_len": u.attention_min_seq_len,
        "argument": mem.argument_size_in_bytes, "output": mem.output_size_in_bytes,
        "alias": mem.alias_size_in_bytes, "temp": mem.temp_size_in_bytes,
        "code": mem.generated_code_size_in_bytes,
        "flops": float(cost.get("flops", float("nan"))),
        "matmul_flops": jaxpr_flops, "while_loops": counts["while"],
        "scheduler": "memory-optimized" if "MEMORY_OPTIMIZED" in os.environ.get("XLA_FLAGS", "") else "default",
        "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
        "lower_s": t1 - t0, "compile_s": t2 - t1,
    }


def state_table(rows: list[dict]) -> str:
    """One line per stage: what the state and batch are (the same for every sweep row)."""
    head = ("| config | params (trainable) | global batch | compute | train state total -> per device "
            "| outputs (aliased) |")
    lines = [head, "|" + "---|" * 6]
    seen = set()
    for r in rows:
        if r["config"] in seen:
            continue
        seen.add(r["config"])
        lines.append(
            f"| {r['config']} | {r['params'] / 1e9:.3f} B ({r['trainable'] / 1e6:.0f} M) | {r['batch']} "
            f"| {r['dtype']} | {r['state_total'] / GIB:.2f} GiB -> {r['state_per_device'] / GIB:.2f} GiB "
            f"| {r['output'] / GIB:.2f} GiB ({r['alias'] / GIB:.2f}) |")
    return "\n".join(lines)


def _baseline(rows: list[dict], r: dict) -> dict | None:
    """The plain-attention row of the same stage and remat policy (the FLOP reference)."""
    for b in rows:
        if (b["config"] == r["config"] and b["remat"] == r["remat"] and b["kernel"] == "xla"
                and "matmul_flops" in b):
            return b
    return None


def _remat(r: dict) -> str:
    """The remat column: the policy, and "per layer" for checkpoints around every layer (rows
    without a scope predate it and were per block)."""
    return r["remat"] + (" per layer" if r.get("remat_scope", "block") == "layer" else "")


def table(rows: list[dict]) -> str:
    head = ("| config | attention (kernel) | min_seq_len | remat | CPU scheduler | per-device arguments | temporaries "
            "| matmul + conv FLOPs per device (jaxpr) | / plain's | XLA cost analysis FLOPs | lower / compile |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        base = _baseline(rows, r)
        ratio = f"{r['matmul_flops'] / base['matmul_flops']:.3f}" if base and "matmul_flops" in base else "-"
        mm = f"{r['matmul_flops'] / 1e12:.2f} TFLOP" if "matmul_flops" in r else "-"
        lines.append(
            f"| {r['config']} | {r['attention']} ({r['kernel']}) | {r['min_seq_len']} | {_remat(r)} "
            f"| {r.get('scheduler', 'default')} | {r['argument'] / GIB:.2f} GiB | {r['temp'] / GIB:.2f} GiB "
            f"| {mm} | {ratio} "
            f"| {r['flops'] / 1e12:.2f} TFLOP | {r['lower_s']:.0f} s / {r['compile_s']:.0f} s |")
    return "\n".join(lines)


def section(rows: list[dict], command: str) -> str:
    return f"""{SECTION}

The AOT train step of the real-scale configs, lowered against abstract inputs (no weights
allocated) and compiled by XLA for 8 fake CPU devices (mesh data=1, fsdp=8, tensor=1), as
`compiled.memory_analysis()` / `compiled.cost_analysis()` report them for ONE device's
program. Train state = fp32 params + AdamW moments of the trainable params + EMA; "arguments"
adds the device's batch shard; outputs alias the donated state. Temporaries are the
activations / gradients under the remat policy (CPU buffer assignment; an accelerator's
differs in detail). FLOPs are XLA's count for one step of one device (forward + backward +
optimizer) in two counts: "matmul + conv FLOPs" sums every dot_general / convolution of the
step's jaxpr (scan bodies times their length, remat recomputation included) divided by the 8
devices, and "/ plain's" divides it by the `xla` row of the same stage and remat policy; XLA's
`cost_analysis()` also counts elementwise work but counts a while-loop body once, so it
undercounts the chunked attention's chunk loops (by their trip count) and is not comparable
across implementations.
On the CPU backend the configs' `auto` resolves to `chunked`. Measured on
{platform.processor() or platform.machine()} (CPU backend; compile time is for this loaded
2-core machine).

Command(s): `{command}` (then `--from-json` / `--write` to render this section)

{state_table(rows)}

{table(rows)}
{NOTE}"""


def write_section(text: str, path: Path) -> None:
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION in doc:
        start = doc.index(SECTION)
        nxt = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text.rstrip("\n") + ("\n" + doc[nxt:] if nxt >= 0 else "\n")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="video,image", help="comma-separated: video, image")
    parser.add_argument("--attention", default="xla,chunked",
                        help="comma-separated attention implementations (or 'config'); CPU: xla, chunked, auto")
    parser.add_argument("--remat", default="config", help="comma-separated remat policies (or 'config')")
    parser.add_argument("--min-seq-len", default="config", help="comma-separated attention_min_seq_len values "
                        "(or 'config')")
    parser.add_argument("--chunk", default="config", help="comma-separated chunked-attention tile sizes QxKV "
                        "(query x key/value, e.g. 1024x1024,512x512) or 'config'")
    parser.add_argument("--remat-scope", default="config", help="comma-separated remat scopes (or 'config'): "
                        "block, layer")
    parser.add_argument("--write", action="store_true", help="replace this bench's section of BENCHMARKS.md")
    parser.add_argument("--json", default="", help="also save the rows here after each compile (a sweep "
                        "killed part-way keeps what it measured)")
    parser.add_argument("--from-json", default="", help="comma-separated JSON files of earlier runs: print / "
                        "--write their rows (and the commands that made them) without compiling")
    args = parser.parse_args(argv)
    if args.from_json:
        runs = [json.loads(Path(f).read_text()) for f in args.from_json.split(",") if f.strip()]
        rows = [r for run in runs for r in run["rows"]]
        text = section(rows, "`; `".join(run["command"] for run in runs))
        print(text)
        if args.write:
            write_section(text, REPO / "BENCHMARKS.md")
        return 0
    from mimaface_jax.models.unet_config import REMAT_POLICIES, REMAT_SCOPES

    def split(text):
        return [x.strip() for x in text.split(",") if x.strip()]

    stages, attentions, remats, min_seq_lens, chunks, scopes = (
        split(x) for x in (args.stages, args.attention, args.remat, args.min_seq_len, args.chunk, args.remat_scope))
    bad = [s for s in stages if s not in CONFIGS]
    if bad:
        parser.error(f"--stages: unknown {bad}; choose from {list(CONFIGS)}")
    bad = [a for a in attentions if a not in ("config", "xla", "chunked", "auto")]
    if bad:
        parser.error(f"--attention: {bad} cannot be compiled for CPU devices; choose from config, xla, chunked, auto")
    bad = [r for r in remats if r != "config" and r not in REMAT_POLICIES]
    if bad:
        parser.error(f"--remat: unknown {bad}; choose from config, {', '.join(REMAT_POLICIES)}")
    bad = [m for m in min_seq_lens if m != "config" and not (m.isdigit())]
    if bad:
        parser.error(f"--min-seq-len: {bad} are not non-negative integers (or 'config')")
    bad = [s for s in scopes if s != "config" and s not in REMAT_SCOPES]
    if bad:
        parser.error(f"--remat-scope: unknown {bad}; choose from config, {', '.join(REMAT_SCOPES)}")
    for chunk in chunks:
        try:
            parse_chunk(chunk)
        except ValueError as e:
            parser.error(str(e))
    import jax

    if jax.device_count() != 8:
        print(f"bench/train_step_sd15.py needs 8 devices, found {jax.device_count()}: run with "
              "XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu", file=sys.stderr)
        return 2
    flags = os.environ.get("XLA_FLAGS", "")
    command = (f"XLA_FLAGS='{flags}' JAX_PLATFORMS=cpu .venv/bin/python bench/train_step_sd15.py "
               f"--stages {','.join(stages)} --attention {','.join(attentions)} --remat {','.join(remats)} "
               f"--min-seq-len {','.join(min_seq_lens)}"
               + (f" --chunk {','.join(chunks)}" if chunks != ["config"] else "")
               + (f" --remat-scope {','.join(scopes)}" if scopes != ["config"] else ""))
    rows = []
    for stage in stages:
        for attention in attentions:
            for remat in remats:
                for min_seq_len in min_seq_lens:
                    for chunk in chunks:
                        for scope in scopes:
                            print(f"[bench] {CONFIGS[stage]} attention={attention} remat={remat} "
                                  f"min_seq_len={min_seq_len} chunk={chunk} remat_scope={scope}: lowering and "
                                  "compiling ...", flush=True)
                            rows.append(analyse(stage, attention, remat, min_seq_len, chunk, scope))
                            print(table(rows[-1:]), flush=True)
                            if args.json:
                                Path(args.json).write_text(json.dumps({"command": command, "rows": rows},
                                                                      indent=1))
    text = section(rows, command)
    print(text)
    if args.write:
        write_section(text, REPO / "BENCHMARKS.md")
        print(f"[bench] wrote the section to {REPO / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
