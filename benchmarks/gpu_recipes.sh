# Runs benchmarks/gpu_recipes.py on a GPU machine that has JAX but neither TensorFlow nor ocrexp's
# dependencies (the lent GPU machines), from the repository root. Prepare .gpu/ first, here:
#   python benchmarks/gpu_recipes.py prepare .gpu
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/wheels \
#     keras==3.15.1 namex==0.1.0 optree==0.20.0 hydra-core==1.3.8 omegaconf==2.3.1
#   mkdir -p .gpu/site && cp -r .venv/lib/python3.11/site-packages/antlr4 .gpu/site/  # sdist only on PyPI
# then carry .gpu and run: bash benchmarks/gpu_recipes.sh --seeds 0 1
set -o pipefail
SITE=${SITE:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/wheels/*.whl || exit 1
export PYTHONPATH=$SITE:$PWD/.gpu/site:$PWD/src KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 benchmarks/gpu_recipes.py run .gpu "$@" --json "${OUT:-/tmp}/gpu_recipes.json" 2>&1 | tee "${OUT:-/tmp}/gpu_recipes.log"
