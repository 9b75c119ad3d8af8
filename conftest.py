"""Suite-wide set-up, for the tests and the docstrings' examples alike.

- **Hermetic cache.** The whole run (every xdist worker too) uses one temporary ``DRIFT_CACHE``,
  removed at the end. What the user's own cache already holds (the converted default model, key
  statistics, generated prefixes) is *linked* into it file by file and only read: drift writes
  every cache file to a temporary name and renames it into place, which replaces a link and never
  writes through it. So a run never changes a file under the user's cache folder.
- **Tiers.** A test that uses the real model (the ``real`` fixture) is ``slow``; ``notebooks`` and
  ``integration`` tests are ``slow`` too. ``-m "not slow"`` is the fast inner loop.
- **Doctests.** Examples run against a tiny random model: ``model`` (2 layers), ``case`` (the
  first built-in case) and ``drift`` are in every docstring's namespace. Lines that need the real
  model (loading it, printing its numbers) carry ``# doctest: +SKIP``; the rest run and can fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SLOW_MARKERS = ("notebooks", "integration")


def _user_cache() -> Path:
    env = os.environ.get("DRIFT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "drift"


def link_cache(source: Path, target: Path) -> int:
    """Mirror ``source``'s files into ``target`` as symbolic links (folders are made for real);
    returns how many files were linked."""
    n = 0
    if not source.is_dir():
        return 0
    for path in source.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                dest.symlink_to(path.resolve())
                n += 1
    return n


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker inherits the controller's cache
        return
    root = Path(tempfile.mkdtemp(prefix="drift-test-cache-"))
    link_cache(_user_cache(), root)
    config._drift_cache = (root, os.environ.get("DRIFT_CACHE"))
    os.environ["DRIFT_CACHE"] = str(root)


def pytest_unconfigure(config):
    saved = getattr(config, "_drift_cache", None)
    if saved is None:
        return
    root, previous = saved
    shutil.rmtree(root, ignore_errors=True)
    if previous is None:
        os.environ.pop("DRIFT_CACHE", None)
    else:
        os.environ["DRIFT_CACHE"] = previous


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "real" in getattr(item, "fixturenames", ()) or any(
            item.get_closest_marker(m) for m in SLOW_MARKERS
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny():
    """The tiny random model (2 layers), shared by the session."""
    from drift.model.tiny import tiny_bridge

    return tiny_bridge(seed=0)


@pytest.fixture(autouse=True)
def _docstring_namespace(request):
    """``model``, ``case``, ``cases`` and ``drift`` for the docstrings' examples (doctest items only)."""
    if type(request.node).__name__ != "DoctestItem":
        return
    import drift
    from drift.data import load_cases

    ns = request.getfixturevalue("doctest_namespace")
    from drift.model.tiny import tiny_folder

    ns.update(
        model=request.getfixturevalue("tiny"),
        case=load_cases("builtin")[0],
        cases=load_cases("builtin"),
        drift=drift,
        TINY=str(tiny_folder(seed=0)),  # the tiny model's folder, where a model name is asked
    )
