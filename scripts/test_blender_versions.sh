#!/usr/bin/env bash
# Run the add-on's Blender tests against every supported Blender (the bpy wheels for Python 3.11):
# 4.2 LTS, 4.5 LTS and 5.0, each in its own virtual environment under .cache/blender-venvs/<version>.
#
#   bash scripts/test_blender_versions.sh                 # all three
#   bash scripts/test_blender_versions.sh 4.2 5.0         # some
#   BLENDER_VENVS=/tmp/venvs bash scripts/test_blender_versions.sh
#   SETUP_ONLY=1 bash scripts/test_blender_versions.sh    # create the environments, run nothing
#   PYTHON_4_5=.venv/bin/python bash scripts/test_blender_versions.sh   # reuse an environment that has
#                                                         # that bpy already (no second 300 MB download)
#
# Each environment gets that bpy wheel (~300 MB, downloaded once), the project's base dependencies
# (the server the tests start runs from the same environment) and pytest. The project itself is not
# installed: the tests import it from this checkout (PYTHONPATH), so nothing is written into it.
# Extra pytest arguments go after "--": bash scripts/test_blender_versions.sh 5.0 -- -k material
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3.11}
VENVS=${BLENDER_VENVS:-$ROOT/.cache/blender-venvs}

declare -A PINS=([4.2]="bpy==4.2.*" [4.5]="bpy==4.5.*" [5.0]="bpy==5.0.*")
versions=()
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; pytest_args=("$@"); break ;;
    *) [ -n "${PINS[$1]:-}" ] || { echo "unknown Blender version '$1' (choose from: ${!PINS[*]})" >&2; exit 2; }
       versions+=("$1"); shift ;;
  esac
done
[ ${#versions[@]} -gt 0 ] || versions=(4.2 4.5 5.0)

# The base dependencies, read from pyproject.toml so there is one list.
deps=$("$PYTHON" - <<'EOF'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
EOF
)

python_for() {  # $1: version -> the interpreter that runs its tests
  local var="PYTHON_${1/./_}"
  if [ -n "${!var:-}" ]; then echo "${!var}"; else echo "$VENVS/$1/bin/python"; fi
}

setup() {  # $1: version
  local var="PYTHON_${1/./_}"
  [ -n "${!var:-}" ] && return 0
  local venv="$VENVS/$1"
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.ready" ]; then
    echo "== Blender $1: creating $venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    mapfile -t dep_list <<<"$deps"
    "$venv/bin/python" -m pip install -q "${PINS[$1]}" "${dep_list[@]}" pytest pytest-timeout
    touch "$venv/.ready"
  fi
}

status=0
summary=()
for v in "${versions[@]}"; do
  setup "$v"
  [ -n "${SETUP_ONLY:-}" ] && continue
  py=$(python_for "$v")
  actual=$("$py" -c "import bpy; print(bpy.app.version_string)" 2>/dev/null | tail -n 1)
  echo "== Blender $actual: tests/addon"
  start=$(date +%s)
  # Deprecation warnings are shown (pytest's summary names the file that triggered each); one that
  # points into blender_addon/ fails the run: our code must not use what a newer Blender removes.
  mkdir -p "$VENVS"
  log="$VENVS/last-run-$v.log"
  if PYTHONPATH="$ROOT" "$py" -m pytest -q -p no:cacheprovider tests/addon \
      --ignore=tests/addon/test_typecheck.py -W default::DeprecationWarning "${pytest_args[@]}" 2>&1 | tee "$log"; then
    result=passed
  else
    result=FAILED
    status=1
  fi
  if grep -n "blender_addon/.*DeprecationWarning\|DeprecationWarning.*blender_addon/" "$log" >/dev/null; then
    result="$result, with deprecation warnings from blender_addon/ (see $log)"
    status=1
  fi
  summary+=("Blender $actual: $result in $(( $(date +%s) - start )) s")
done
printf '%s\n' "${summary[@]}"
exit $status
