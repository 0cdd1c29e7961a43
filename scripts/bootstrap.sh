# Sourced by ./energy and ./test: make sure .venv exists and holds this checkout, installed
# with its test tools. Reinstalls only when pyproject.toml is newer than the last install.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    echo "installing energy-engine and its dependencies into $venv ..." >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here[test]"
    touch "$stamp"
fi
