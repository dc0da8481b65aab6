# Sourced by the other scripts: make sure uv and the project's Python environment exist.
# A fresh machine has Python 3.11+ and pip; everything else is installed from here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv" >&2
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  # pip may put the script where PATH does not look (e.g. behind pyenv shims not yet rehashed).
  command -v uv >/dev/null 2>&1 || uv() { python3 -m uv "$@"; }
fi
echo "==> installing Python dependencies (uv sync --frozen)" >&2
uv sync --frozen --quiet
