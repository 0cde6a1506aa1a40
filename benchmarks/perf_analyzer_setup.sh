#!/usr/bin/env bash
# NVIDIA's perf_analyzer (Triton's load tool) on a CPU-only Linux machine, outside the project's dependencies.
#
#     bash benchmarks/perf_analyzer_setup.sh [DIR]      # DIR: $PERF_TOOLS, else ~/.cache/infersearch/perf-tools
#
# The `perf-analyzer` wheel needs glibc >= 2.38 (Debian 12 has 2.36: pip then resolves a placeholder).
# tritonclient 2.51.0 still ships the binary inside its wheel; installed with --no-deps (none of its
# Python dependencies are needed, and the project's own tritonclient stays as it is) it runs with
# Debian's libb64 and CUDA's runtime library from the package index on LD_LIBRARY_PATH (no GPU used).
# Writes DIR/perf_analyzer, a wrapper that sets LD_LIBRARY_PATH, and prints its version.
set -euo pipefail

DIR="${1:-${PERF_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/infersearch/perf-tools}}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

if ! ldconfig -p | grep -q 'libb64\.so\.0d'; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y --no-install-recommends libb64-0d
fi
if [ ! -x "$DIR/bin/perf_analyzer" ] || [ ! -d "$DIR/nvidia/cuda_runtime/lib" ]; then
    "$PYTHON" -m pip install -q --no-deps --target "$DIR" "tritonclient==2.51.0" "nvidia-cuda-runtime-cu12"
fi

cat > "$DIR/perf_analyzer" <<EOF
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$DIR/nvidia/cuda_runtime/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$DIR/bin/perf_analyzer" "\$@"
EOF
chmod +x "$DIR/perf_analyzer"
if missing="$(LD_LIBRARY_PATH="$DIR/nvidia/cuda_runtime/lib" ldd "$DIR/bin/perf_analyzer" | grep 'not found')"; then
    echo "perf_analyzer still lacks: $missing" >&2
    exit 1
fi
"$DIR/perf_analyzer" --version
echo "perf_analyzer ready: $DIR/perf_analyzer (or PERF_ANALYZER=$DIR/perf_analyzer for benchmarks/serve_perf_analyzer.py)"
