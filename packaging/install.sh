#!/usr/bin/env bash
# Install diffstudio for this user on Linux or macOS, without cloning the repository:
#
#   curl -LsSf https://.../install.sh | bash            # or: bash packaging/install.sh
#   bash install.sh --from dist/diffstudio-0.1.0-py3-none-any.whl   # a wheel you built
#
# 1. makes a virtual environment in the user's data folder (what platformdirs calls
#    user_data_dir("diffstudio")): ~/.local/share/diffstudio/venv on Linux ($XDG_DATA_HOME is
#    honoured), ~/Library/Application Support/diffstudio/venv on macOS;
# 2. installs PyTorch: the CUDA build when nvidia-smi finds a GPU (the newest CUDA the driver
#    supports), the CPU build otherwise (on macOS the standard build, which uses Apple MPS);
#    it says which, and --torch cpu|cu118|cu126|cu128|cu130 (or DIFFSTUDIO_TORCH) changes it;
# 3. installs diffstudio (from PyPI, or --from a wheel, an sdist or a folder);
# 4. registers the menu entry and icons (python -m diffstudio.desktop install) and links
#    ~/.local/bin/diffstudio to the command;
# 5. runs diffstudio --selftest.
#
# Run it again to upgrade; --uninstall removes the environment, the menu entry and the link.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [--torch cpu|cu118|cu126|cu128|cu130|default] [--from SPEC] [--python PY]
                  [--prefix DIR] [--no-menu] [--no-selftest] [--print-torch] [--uninstall]

  --torch      which PyTorch build to install (default: detected with nvidia-smi; also
               DIFFSTUDIO_TORCH). 'default' takes PyPI's own build.
  --from       what to install instead of 'diffstudio' from PyPI: a wheel, an sdist, a folder
  --python     the Python (3.10 or newer) to make the environment with (default: the newest
               python3.x found on PATH)
  --prefix     the folder to install into (default: the user data folder, see above; also
               DIFFSTUDIO_HOME)
  --print-torch  say which PyTorch build would be installed, and why, then stop
EOF
}

say() { printf 'diffstudio install: %s\n' "$*"; }
die() { printf 'diffstudio install: error: %s\n' "$*" >&2; exit 2; }

torch_choice="${DIFFSTUDIO_TORCH:-}"
spec="diffstudio"
python=""
prefix="${DIFFSTUDIO_HOME:-}"
menu=1
selftest=1
uninstall=0
print_torch=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --torch) torch_choice="${2:?--torch needs a value}"; shift 2 ;;
        --torch=*) torch_choice="${1#*=}"; shift ;;
        --from) spec="${2:?--from needs a value}"; shift 2 ;;
        --from=*) spec="${1#*=}"; shift ;;
        --python) python="${2:?--python needs a value}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
        --no-menu) menu=0; shift ;;
        --no-selftest) selftest=0; shift ;;
        --uninstall) uninstall=1; shift ;;
        --print-torch) print_torch=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
done

os="$(uname -s)"
if [ -z "$prefix" ]; then
    case "$os" in
        Darwin) prefix="$HOME/Library/Application Support/diffstudio" ;;
        *) prefix="${XDG_DATA_HOME:-$HOME/.local/share}/diffstudio" ;;
    esac
fi
venv="$prefix/venv"
link="$HOME/.local/bin/diffstudio"

if [ "$uninstall" = 1 ]; then
    if [ -x "$venv/bin/python" ]; then
        "$venv/bin/python" -m diffstudio.desktop uninstall || true
    fi
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$venv/bin/diffstudio" ]; then
        rm -f "$link"
    fi
    rm -rf "$venv"
    say "removed $venv and the menu entry (settings and runs are kept; see packaging/README.md)"
    exit 0
fi

# -- Python -----------------------------------------------------------------------------------
python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null
}
if [ -n "$python" ]; then
    python_ok "$python" || die "$python is not Python 3.10 or newer"
else
    for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            python="$candidate"
            break
        fi
    done
    [ -n "$python" ] || die "no Python 3.10 or newer found; install one (python.org, your \
package manager or 'uv python install 3.12') or pass --python /path/to/python3"
fi
"$python" -m venv --help >/dev/null 2>&1 || die "$python has no venv module; on Debian or \
Ubuntu install python3-venv"

# -- which torch ------------------------------------------------------------------------------
# The newest CUDA build whose CUDA version the driver supports ("CUDA Version: 12.4" in
# nvidia-smi's header is the newest the driver runs).
cuda_tag_for_driver() {
    local version major minor number
    version="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9]*\).*/\1/p' \
        | head -n 1)"
    [ -n "$version" ] || return 1
    major="${version%%.*}"
    minor="${version#*.}"
    number=$((major * 10 + minor))
    if [ "$number" -ge 130 ]; then echo cu130
    elif [ "$number" -ge 128 ]; then echo cu128
    elif [ "$number" -ge 126 ]; then echo cu126
    elif [ "$number" -ge 118 ]; then echo cu118
    else return 1
    fi
}
reason=""
if [ -z "$torch_choice" ]; then
    if [ "$os" = Darwin ]; then
        torch_choice="default"
        reason="macOS: PyPI's build, which uses the Apple GPU through MPS"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
        if tag="$(cuda_tag_for_driver)"; then
            torch_choice="$tag"
            reason="nvidia-smi found $(nvidia-smi -L | head -n 1 | sed 's/ (UUID.*//')"
        else
            torch_choice="cpu"
            reason="nvidia-smi found a GPU, but its driver is older than CUDA 11.8: update the \
driver for GPU support"
        fi
    else
        torch_choice="cpu"
        reason="no NVIDIA GPU found: nvidia-smi is missing or lists none"
    fi
else
    reason="chosen with --torch or DIFFSTUDIO_TORCH"
fi
case "$torch_choice" in
    cpu|cu118|cu126|cu128|cu130) torch_index="https://download.pytorch.org/whl/$torch_choice" ;;
    default) torch_index="" ;;
    *) die "--torch must be cpu, cu118, cu126, cu128, cu130 or default, not '$torch_choice'" ;;
esac
say "PyTorch build: $torch_choice ($reason)"
say "  to change it: install.sh --torch cpu|cu118|cu126|cu128|cu130|default (packaging/README.md)"
if [ "$print_torch" = 1 ]; then
    say "  index: ${torch_index:-PyPI}"
    exit 0
fi

# -- the environment --------------------------------------------------------------------------
say "environment: $venv"
mkdir -p "$prefix"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)
if [ -n "$torch_index" ]; then
    # torch first, from its own index; diffstudio's install then finds it satisfied.
    "${pip[@]}" install --upgrade torch torchvision --index-url "$torch_index"
fi
"${pip[@]}" install --upgrade "$spec"
command_path="$venv/bin/diffstudio"
[ -x "$command_path" ] || die "the install did not create $command_path"

# -- menu entry and command -------------------------------------------------------------------
if [ "$menu" = 1 ]; then
    "$venv/bin/python" -m diffstudio.desktop install --exec "$command_path"
fi
mkdir -p "$(dirname "$link")"
if [ ! -e "$link" ] || [ -L "$link" ]; then
    ln -sf "$command_path" "$link"
    say "command: $link"
    case ":$PATH:" in
        *":$HOME/.local/bin:"*) ;;
        *) say "  ~/.local/bin is not on your PATH: add it, or run $command_path" ;;
    esac
else
    say "command: $command_path ($link exists and is not a link, so it was left alone)"
fi

if [ "$selftest" = 1 ]; then
    say "self-test:"
    "$command_path" --selftest || die "the self-test failed (above); see Troubleshooting in \
the README"
fi
say "done: start diffstudio from the application menu, or run 'diffstudio'"
