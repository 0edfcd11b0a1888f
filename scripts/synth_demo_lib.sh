# Shared by scripts/demo.sh and scripts/ablate.sh (sourced, not run): the demo's budget, its
# SynthFaces build and its training commands. Expects $work (absolute) to be set.
DEMO_STEPS_IMAGE=1600
DEMO_STEPS_VIDEO=100
py=.venv/bin/python
export JAX_PLATFORMS=cpu
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$work/xla_cache}"
tfds_dir="$work/tfds"
synth_dataset="$tfds_dir/synth_faces/demo64/1.0.0"
data_flags=(--config.data.source=tfds --config.data.tfds_data_dir="$tfds_dir" --config.data.mixture=synth_faces=1)

check_steps() {  # check_steps N...: positive integers
  for n in "$@"; do
    case "$n" in ''|*[!0-9]*|0) echo "$(basename "$0"): step counts must be positive integers, got '$n'" >&2; exit 2 ;; esac
  done
}

build_synth_faces() {  # SynthFaces -> TFDS ArrayRecord (64x64; 480 + 8 people, one 12-frame video each)
  if [ ! -f "$synth_dataset/dataset_info.json" ]; then
    "$py" -m data_pipelines.build synth_faces/res64 --data_dir "$tfds_dir" --config_name demo64 \
      --set train_identities=480 --set validation_identities=8 --set test_identities=0 \
      --set videos_per_identity=1 --set num_frames=12 2>&1 | grep -v "examples/s\|splits/s" || true
  fi
  [ -f "$synth_dataset/dataset_info.json" ] || { echo "$(basename "$0"): the SynthFaces build failed" >&2; exit 1; }
}

train_stage() {  # train_stage VARIANT WORKDIR STEPS [--config.x=y ...]: configs/tiny.py:VARIANT
  local variant=$1 dir=$2 steps=$3
  shift 3
  "$py" -m mimaface_jax.train --config "configs/tiny.py:$variant" --workdir "$dir" "${data_flags[@]}" \
    --config.train.num_steps="$steps" --config.optimizer.warmup_steps=$(( steps < 20 ? steps : 20 )) \
    --verbosity=-1 "$@"
}
