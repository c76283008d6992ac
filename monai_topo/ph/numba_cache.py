"""Where numba caches the compiled PH engine, so that a read-only install imports and runs.

numba caches a ``cache=True`` function beside its source (``__pycache__``), else in the user's
cache folder (``~/.cache/numba``), and raises "no locator available" at import when neither can
be written (a container image, an HPC module with a read-only home). :func:`configure_numba_cache`
runs before the engine is imported: it keeps numba's own choice when numba has one (or
``NUMBA_CACHE_DIR`` is set), else points numba at a per-user folder of the temporary directory,
else turns caching off for the engine, saying so in one log line. The first compile in a process
(about a minute, once per cache folder) is announced in one log line too.

To warm the cache of a container image, import and run the engine once while building it, with
``NUMBA_CACHE_DIR`` set to a folder that stays in the image (and is set again at run time)::

    ENV NUMBA_CACHE_DIR=/opt/numba-cache
    RUN python -c "import torch, monai_topo.ph as ph; ph.cubical_persistence(torch.rand(8, 8)); \\
                   ph.cubical_persistence(torch.rand(4, 4, 4))"
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from numba.core import caching, config, dispatcher, event

logger = logging.getLogger(__name__)

ENGINE_SOURCE = Path(__file__).with_name("unionfind.py")
"""The source file whose compiled functions are cached."""


def _probe() -> None:
    """A stand-in function for asking numba's locators whether they can cache ``ENGINE_SOURCE``."""


def numba_can_cache(source: Path = ENGINE_SOURCE) -> str | None:
    """The folder numba would cache functions of ``source`` in, or None when no locator can write.

    Asks numba's own cache locators, in numba's order (``NUMBA_CACHE_DIR``, beside the source,
    the user-wide cache folder, ...), as numba does when a ``cache=True`` function is defined.

    Examples
    --------
    >>> from monai_topo.ph.numba_cache import numba_can_cache
    >>> isinstance(numba_can_cache(), (str, type(None)))
    True
    """
    for locator_class in caching.CacheImpl._locator_classes:
        locator = locator_class.from_function(_probe, str(source))
        if locator is not None:
            return locator.get_cache_path()
    return None


def _temporary_cache_dir() -> str | None:
    """A per-user folder in the temporary directory, if one exists or can be made (None otherwise)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    try:
        return os.path.join(tempfile.gettempdir(), f"monai_topo-numba-cache-{user}")
    except (FileNotFoundError, OSError):  # no writable temporary directory at all
        return None


@contextlib.contextmanager
def _caching_disabled() -> Iterator[None]:
    """Define ``cache=True`` functions without a cache (numba would raise for want of a locator)."""
    enable_caching = dispatcher.Dispatcher.enable_caching
    dispatcher.Dispatcher.enable_caching = lambda self: None
    try:
        yield
    finally:
        dispatcher.Dispatcher.enable_caching = enable_caching


class _FirstCompileNotice(event.Listener):
    """Logs once, when numba starts compiling a function of the package (not on a cache hit)."""

    def __init__(self, cache_dir: str | None) -> None:
        self.cache_dir = cache_dir
        self.done = False

    def on_start(self, ev: event.Event) -> None:
        if self.done:
            return
        py_func = getattr(ev.data.get("dispatcher"), "py_func", None)
        if getattr(py_func, "__module__", "").startswith("monai_topo."):
            self.done = True
            where = f"cached in {self.cache_dir}" if self.cache_dir else "not cached: no writable cache folder"
            logger.warning("monai_topo: compiling the persistent homology engine with numba (about a minute, %s)", where)

    def on_end(self, ev: event.Event) -> None:
        pass


_NOTICE: _FirstCompileNotice | None = None


def configure_numba_cache() -> contextlib.AbstractContextManager:
    """Choose where the engine is cached; return the context to import the engine in.

    Returns
    -------
    contextlib.AbstractContextManager
        A no-op when a cache folder could be written, else one that defines the engine's
        functions without a cache.
    """
    global _NOTICE
    cache_dir = numba_can_cache()
    if cache_dir is None and not config.CACHE_DIR:
        candidate = _temporary_cache_dir()
        if candidate is not None:
            config.CACHE_DIR = candidate
            cache_dir = numba_can_cache()
            if cache_dir is None:
                config.CACHE_DIR = ""
            else:
                logger.info("monai_topo: the package and user cache folders are read-only; numba caches in %s", candidate)
    if _NOTICE is None:
        _NOTICE = _FirstCompileNotice(cache_dir)
        event.register("numba:compile", _NOTICE)
    if cache_dir is None:
        logger.warning(
            "monai_topo: no writable numba cache folder (package, user cache, temporary directory); the PH engine "
            "is compiled in every process. Set NUMBA_CACHE_DIR to a writable folder to cache it."
        )
        return _caching_disabled()
    return contextlib.nullcontext()
