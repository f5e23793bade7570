#!/usr/bin/env bash
# The GPU checks of a session that is lent a GPU, as one prepared run (docs/benchmarks.md, "On a GPU"):
#
#   bash benchmarks/gpu_checks.sh OUTDIR
#
# Each step runs under its own time limit and appends to OUTDIR/log.txt; the RESULT lines of the benchmarks go to
# OUTDIR/results.jsonl, each run's metrics.json beside them, so a run stopped at any point still returns what it
# finished. Steps, in order of priority:
#   1. the machine: GPU, torch, the CUDA tests of the suite (checkpoint RNG state, fields and point clouds on cuda);
#   2. examples/workflows/gaussian_field.toml through `physgen run`, unchanged (device = "auto"; issue 14);
#   3. benchmarks/nbody.py --device cuda against jaxpm on the same GPU, 128^3 particles (issue 21);
#   4. examples/emulate/lognormal_field.toml at 64x64 and 128x128 through `physgen emulate` (issue 15), the same
#      file with the grid size changed and a short budget (max_time, fewer simulations and θ: a run check and
#      the cost per field, not the emulator's accuracy);
#   5. benchmarks/fields_speed.py --device cuda (Gaussian fields, every θ different);
#   6. (only when named in STEPS) "families": one workflow config of each other family (point clouds, Ising,
#      lognormal, convergence map) through every stage of `physgen run` with max_epochs = 2: a check that each
#      runs on the GPU, with each stage's time, not a result.
# STEPS (default "tests workflow nbody emulate fields") picks and orders the steps; each lease was 15 minutes so
# far, which the default fills: run "families" in the next lease (docs/benchmarks.md, "On a GPU").
# On a machine without the project's dependencies, wheels in .whl/ are installed into /tmp/site first (the device
# tool's recipe). `bash benchmarks/gpu_checks.sh --fetch-wheels` downloads them into .whl/ here (Python 3.12,
# manylinux x86-64: what the lent H200 image runs): zuko, emcee, arviz, zarr and their needs that image lacks,
# and jaxpm, jax_cosmo, jaxdecomp for the N-body peer; add /.whl/ to .git/info/exclude and carry ".whl".
# SMOKE=1 shrinks every step to seconds (a check of this script on a CPU machine; its numbers mean nothing).
set -u
if [ "${1:-}" = --fetch-wheels ]; then
    plat=""
    for t in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux2014; do
        plat="$plat --platform ${t}_x86_64"
    done
    mkdir -p .whl
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl \
        zuko==1.6.0 emcee==3.1.6 arviz==0.23.4 xarray-einstats==0.9.1 h5netcdf==1.8.3 platformdirs zarr==3.1.6 \
        numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 jaxpm==0.1.6 jaxdecomp==0.3.4 || exit 1
    python3 -m pip wheel -q --no-deps -w .whl jax_cosmo==0.1.0 || exit 1  # an sdist only
    ls .whl
    exit 0
fi
OUT=${1:?usage: bash benchmarks/gpu_checks.sh OUTDIR}
mkdir -p "$OUT"
SMOKE=${SMOKE:-0}
STEPS=${STEPS:-tests workflow nbody emulate fields}
PY=${PY:-python3}
RUNS=${RUNS:-/tmp/gpu_runs}
mkdir -p "$RUNS"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false MPLBACKEND=Agg
exec > >(tee -a "$OUT/log.txt") 2>&1
if [ "$SMOKE" != 1 ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || echo "wheel install failed"
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
DEV=cuda
$PY -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" || DEV=cpu

step() {  # step NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    echo "=== $name (limit ${limit} s) start $(date -u +%T)"
    timeout -k 10 "$limit" "$@"
    rc=$?
    echo "=== $name rc=$rc in $((SECONDS - t0)) s"
}

results() {  # results NAME LOGFILE: the RESULT line of a benchmark's output into results.jsonl
    grep '^RESULT ' "$2" | sed "s/^RESULT /{\"step\": \"$1\", \"result\": /; s/\$/}/" >> "$OUT/results.jsonl"
}

bench() {  # bench NAME LIMIT SCRIPT ARGS...
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" $PY "$@" > "$RUNS/$name.log" 2>&1
    cat "$RUNS/$name.log"
    results "$name" "$RUNS/$name.log"
}

want() { [[ " $STEPS " == *" $1 "* ]]; }

# 1. the machine and the CUDA tests
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, physgen; print('torch', torch.__version__, '| physgen', physgen.__version__, '| device',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
want tests && step pytest-cuda 45 $PY -m pytest -q -p no:cacheprovider tests/test_checkpoint.py \
    tests/test_cosmology.py::test_cuda_matches_statistics tests/test_galaxies.py::test_cuda_thomas

# 2. a science workflow, its config unchanged
want workflow && {
cfg=examples/workflows/gaussian_field.toml
if [ "$SMOKE" = 1 ]; then
    cfg=$RUNS/gaussian_field_smoke.toml
    sed -e 's/^n = 20000/n = 600/' -e 's/^max_epochs = 80/max_epochs = 2/' -e 's/^num_test = 500/num_test = 40/' \
        -e 's/max_steps = 10000/max_steps = 300/' -e 's/^num_observations = 5/num_observations = 1/' \
        -e 's/^n = 10000/n = 200/' -e 's/^num_posterior_samples = 1000/num_posterior_samples = 200/' \
        examples/workflows/gaussian_field.toml > "$cfg"
fi
rm -rf "$RUNS/gaussian_field"
step workflow-gaussian-field 260 $PY -m physgen.cli run "$cfg" --run-dir "$RUNS/gaussian_field"
cp "$RUNS/gaussian_field/report/metrics.json" "$OUT/gaussian_field_metrics.json" 2>/dev/null
}

# 3. the PM N-body code against jaxpm on the same device
if [ "$SMOKE" = 1 ]; then NB="16"; else NB="128"; fi
want nbody && for n in $NB; do
    bench "nbody$n" 75 benchmarks/nbody.py --device $DEV --threads all --no-ode --repeats 3 --n-particles "$n"
done

# 4. the field emulator at 64^2 and 128^2
want emulate && for n in 64 128; do
    c=$RUNS/lognormal_$n.toml
    if [ "$SMOKE" = 1 ]; then sims=200 t=5 nt=2 np=8; n=$((n / 4)); else sims=4000 t=40 nt=4 np=50; fi
    sed -e "s/n = 32, box_size = 128.0/n = $n, box_size = $((128 * n / 32)).0/" -e "s/^n = 20000/n = $sims/" \
        -e "s/^max_time = 7200/max_time = $t/" -e "s/^num_theta = 20/num_theta = $nt/" \
        -e "s/^num_per_theta = 200/num_per_theta = $np/" examples/emulate/lognormal_field.toml > "$c"
    rm -rf "$RUNS/emulator_$n"
    step "emulate-$n" 85 $PY -m physgen.cli emulate "$c" --run-dir "$RUNS/emulator_$n"
    cp "$RUNS/emulator_$n/report/metrics.json" "$OUT/emulator_${n}_metrics.json" 2>/dev/null
done
# 5. Gaussian fields on the GPU
if [ "$SMOKE" = 1 ]; then S=0.2; else S=1; fi
want fields && bench fields 45 benchmarks/fields_speed.py --device $DEV --seconds $S
# 6. the other workflow families, two epochs each
want families && for name in thomas_set_transformer cox_deepsets_pc ising_beta_L16 lognormal_field convergence_map; do
    c=$RUNS/${name}_2epochs.toml
    sed -e '/^max_epochs/d' -e 's/^\[train\]/[train]\nmax_epochs = 2/' "examples/workflows/$name.toml" > "$c"
    if [ "$SMOKE" = 1 ]; then
        sed -i -e 's/^n = [0-9]*/n = 300/' -e 's/^num_test = [0-9]*/num_test = 30/' "$c"
    fi
    rm -rf "$RUNS/$name"
    step "family-$name" 100 $PY -m physgen.cli run "$c" --run-dir "$RUNS/$name"
    $PY -c "import json, sys; print('$name timings', json.load(open(sys.argv[1]))['timings'])" \
        "$RUNS/$name/report/metrics.json" 2>/dev/null
done
echo "=== done $(date -u +%T)"
