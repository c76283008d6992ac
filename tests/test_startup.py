"""Start-up: what ``import monai_topo.ph`` loads, and a read-only install (package and home not writable).

The read-only runs use a copy of the package with every write bit removed and a read-only home folder.
Under root they run with every capability dropped (``setpriv --bounding-set=-all``): root then obeys
write bits like any user (a switch to ``nobody`` would also lose read access to a Python installed
under ``/root``).
"""

import json
import os
import pkgutil
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import monai_topo

PACKAGE = Path(monai_topo.__file__).resolve().parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SETPRIV = shutil.which("setpriv")


def run_python(code: str, env: dict | None = None, user: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code]
    if user and IS_ROOT:
        command = [SETPRIV, "--bounding-set=-all", "--inh-caps=-all", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd="/")


def test_importing_ph_loads_neither_ignite_nor_the_engines():
    code = (
        "import sys, json, monai_topo.ph\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ignite' or 'engines' in m "
        "or m.startswith(('monai_topo.losses', 'monai_topo.handlers')))))"
    )
    done = run_python(code, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_top_level_names_load_on_first_use():
    from monai_topo.engines import SemiSupervisedTrainer
    from monai_topo.losses import TopologicalPriorLoss

    assert monai_topo.TopologicalPriorLoss is TopologicalPriorLoss
    assert monai_topo.SemiSupervisedTrainer is SemiSupervisedTrainer
    assert monai_topo.data.ensure_dataset is monai_topo.ensure_dataset  # bundle configs: import monai_topo
    assert set(monai_topo.__all__) <= set(dir(monai_topo))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        monai_topo.nope  # noqa: B018


def test_every_module_is_reachable_from_import_monai_topo_in_a_fresh_process():
    """Bundle configs import ``monai_topo`` alone, then use ``monai_topo.<module>.<name>``."""
    modules = sorted(info.name for info in pkgutil.iter_modules(monai_topo.__path__) if info.name not in ("__main__", "cli"))
    # dir() before anything is imported: a module that only loads as a side effect of another is not listed
    code = (f"import monai_topo\nmissing = set({modules!r}) - set(dir(monai_topo))\n"
            f"for name in {modules!r}:\n    getattr(monai_topo, name)\nprint(sorted(missing) or 'ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.fixture(scope="module")
def read_only_install():
    """``site/monai_topo`` (no write bits), a read-only ``home`` and a writable ``tmp``, all readable by nobody."""
    if IS_ROOT and SETPRIV is None:
        pytest.skip("running as root without setpriv: cannot run as a user that respects write bits")
    root = Path(tempfile.mkdtemp(prefix="monai_topo-ro-"))
    root.chmod(0o755)
    shutil.copytree(PACKAGE, root / "site" / "monai_topo", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "home").mkdir()
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o777)
    for path in [*root.joinpath("site").rglob("*"), root / "site", root / "home"]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) | stat.S_IROTH
                   | (stat.S_IXOTH if path.is_dir() else 0))
    yield root
    for path in [root / "site", root / "home", *root.joinpath("site").rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(root, ignore_errors=True)


def _env(root: Path, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_", "PYTHON"))}
    return {**env, "PYTHONPATH": str(root / "site"), "HOME": str(root / "home"), "TMPDIR": str(tmp),
            "PYTHONDONTWRITEBYTECODE": "1"}


DIAGRAM = (
    "import logging, json, tempfile, torch\n"
    "tempfile.tempdir = TEMPDIR  # as if the system had no other temporary folder\n"
    "logging.basicConfig(level=logging.INFO, format='LOG %(message)s')\n"
    "from monai_topo.ph import cubical_persistence\n"
    "from numba.core import config\n"
    "x = torch.zeros(7, 7); x[1:6, 1:6] = 1.0; x[3, 3] = 0.0  # a ring\n"
    "d = cubical_persistence(x, backend=BACKEND)\n"
    "print(json.dumps({'betti': list(d.betti(0.5)), 'cache_dir': config.CACHE_DIR}))\n"
)


def _run_diagram(root: Path, tmp: Path, backend: str) -> tuple[dict, list[str]]:
    code = DIAGRAM.replace("BACKEND", repr(backend)).replace("TEMPDIR", repr(str(tmp)))
    done = run_python(code, env=_env(root, tmp), user=True)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [line for line in done.stderr.splitlines() if "monai_topo" in line]
    return json.loads(done.stdout.splitlines()[-1]), logs


def test_read_only_install_caches_in_the_temporary_directory(read_only_install):
    result, logs = _run_diagram(read_only_install, read_only_install / "tmp", "gudhi")
    assert result["betti"] == [1, 1]
    assert result["cache_dir"].startswith(str(read_only_install / "tmp"))
    assert len(logs) == 1 and "numba caches in" in logs[0], logs
    assert not list((read_only_install / "site").rglob("__pycache__"))


def test_read_only_install_without_any_writable_folder_imports_without_a_cache(read_only_install):
    result, logs = _run_diagram(read_only_install, read_only_install / "home", "gudhi")
    assert result["betti"] == [1, 1] and result["cache_dir"] == ""
    assert len(logs) == 1 and "no writable numba cache folder" in logs[0], logs


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_read_only_install_compiles_once_and_reuses_the_cache(read_only_install):
    """The compiled engine itself: the first process announces the compile, the second hits the cache."""
    tmp = read_only_install / "tmp"
    first, first_logs = _run_diagram(read_only_install, tmp, "unionfind")
    second, second_logs = _run_diagram(read_only_install, tmp, "unionfind")
    assert first["betti"] == second["betti"] == [1, 1]
    assert any("compiling the persistent homology engine" in line for line in first_logs), first_logs
    assert not any("compiling" in line for line in second_logs), second_logs
