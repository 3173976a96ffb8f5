"""The README's two commands, in both orders, in fresh virtual environments (issue 11).

Command 1 installs the project as a wheel (``pip install .``) and runs ``step1x3d generate``;
command 2 installs it editable (``pip install -e .``, what ``scripts/test.sh`` does). Once,
the first run's JIT cache, written inside ``site-packages``, survived the switch to the
editable install as a namespace package that shadowed the project: every later call died.
Here each order runs in its own fresh venv, ``generate`` runs after every install, and no
file may appear under ``site-packages`` while it runs.

To keep this to about a minute, the project's dependencies are not downloaded again: the
fresh venv sees the test environment's third-party packages (not the project itself) through
a ``.pth`` file, and the project is installed with ``--no-deps``. What is checked is exactly
what broke: which copy of the project Python imports, and what a run writes where.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("inference_server", "blender_addon")

pytestmark = pytest.mark.slow


def _project_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    return [REPO / name for name in listed if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the checkout (what a newcomer clones), so builds never touch the repo."""
    root = tmp_path_factory.mktemp("checkout")
    for path in _project_files(REPO):
        target = root / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return root


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test environment's installed packages, minus the project and its editable hooks."""
    outer = Path(sysconfig.get_paths()["purelib"])
    folder = tmp_path_factory.mktemp("third-party")
    for entry in outer.iterdir():
        name = entry.name
        if name.startswith(("step1x3d", "__editable__")) or name.endswith(".pth") or name in PROJECT_PACKAGES:
            continue
        (folder / name).symlink_to(entry)
    return folder


def _fresh_venv(root: Path, third_party: Path) -> tuple[Path, Path]:
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip())
    # The build backend must be the test environment's setuptools (the one the project asks for),
    # not the older copy ensurepip puts into every new venv.
    for entry in site.iterdir():
        if entry.name.startswith(("setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    (site / "zz_third_party.pth").write_text(f"{third_party}\n")
    return python, site


def _clean_env() -> dict[str, str]:
    """The user's environment: no PYTHONPATH pointing at the checkout (other tests set one)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STEP1X3D_DEBUG", "PYTHONHOME")}


def _install(python: Path, source: Path, editable: bool) -> None:
    # No build isolation: the build backend (setuptools) comes from the test environment, not a download.
    args = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
            "--disable-pip-version-check"]
    args += ["-e", str(source)] if editable else [str(source)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=source.parent, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]


def _files_under(site: Path) -> set[str]:
    return {str(p.relative_to(site)) for p in site.rglob("*")}


def _generate(python: Path, workdir: Path, source: Path) -> subprocess.CompletedProcess[str]:
    out = workdir / "out" / "apple.glb"  # a folder that does not exist yet: generate creates it
    if out.exists():
        out.unlink()
    env = _clean_env()
    cli = python.parent / "step1x3d"
    proc = subprocess.run(
        [str(cli), "generate", str(source / "examples" / "apple.png"), "-o", str(out),
         "--texture-size", "512", "--max-faces", "20000"],
        capture_output=True, text=True, cwd=workdir, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes()[:4] == b"glTF"
    assert proc.stdout.startswith(f"wrote {out} in ")
    return proc


def _imported_from(python: Path, workdir: Path) -> Path:
    code = "import inference_server, inference_server.kernels; assert inference_server.__file__; print(inference_server.__file__)"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=workdir, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip()).parent


@pytest.mark.parametrize("order", [("wheel", "editable"), ("editable", "wheel")], ids=["1-then-2", "2-then-1"])
def test_the_two_readme_installs_in_either_order_keep_generate_working(
    order: tuple[str, str], source: Path, third_party: Path, tmp_path: Path
) -> None:
    python, site = _fresh_venv(tmp_path / "venv", third_party)
    workdir = tmp_path / "work"  # the user's own folder, outside the checkout
    workdir.mkdir()
    for kind in order:
        _install(python, source, editable=(kind == "editable"))
        expected = source / "inference_server" if kind == "editable" else site / "inference_server"
        assert _imported_from(python, workdir) == expected
        before = _files_under(site)
        _generate(python, workdir, source)  # after each install; both orders make it a repeated run
        assert _files_under(site) == before  # nothing is ever written inside the installed packages
        if kind == "editable":
            # The wheel's copy is gone entirely: no leftover folder can shadow the checkout.
            assert not any((site / name).exists() for name in PROJECT_PACKAGES)
