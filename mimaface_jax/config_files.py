"""Config files loaded by path (``configs/*.py`` are files, not a package).

``load_module(path)`` runs one Python file as a fresh module; ``load_config(spec)`` returns its
``get_config(...)`` where ``spec`` is what ``--config`` takes: ``configs/tiny.py`` or
``configs/tiny.py:image`` (the text after the last ``:`` is passed to ``get_config`` as one
string argument, as absl's ``config_flags`` does).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType


class ConfigFileError(ValueError):
    """A config file that cannot be found or has no ``get_config``."""


def load_module(path: str | os.PathLike) -> ModuleType:
    """Executes the Python file at ``path`` as a new module (not registered in sys.modules).

    Each call returns a fresh module object; the module name is derived from the resolved
    path so that tracebacks and reprs say which file it came from.
    """
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ConfigFileError(f"config file not found: {path}")
    if resolved.suffix != ".py":
        raise ConfigFileError(f"config file must be a .py file: {path}")
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    name = f"mimaface_config_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_spec(spec: str | os.PathLike) -> tuple[str, str | None]:
    """``"dir/file.py:arg"`` -> ``("dir/file.py", "arg")``; ``"dir/file.py"`` -> (path, None)."""
    text = os.fspath(spec)
    path, sep, arg = text.rpartition(":")
    if sep and path.endswith(".py") and os.sep not in arg and "/" not in arg:
        return path, arg
    return text, None


def load_config(spec: str | os.PathLike, *args):
    """``get_config()`` of a config file given as ``file.py`` / ``file.py:arg`` (or a path plus
    explicit ``args``, passed on positionally)."""
    path, arg = split_spec(spec)
    if arg is not None and args:
        raise ConfigFileError(f"{spec}: give the config argument either after ':' or as an "
                              f"argument, not both (got also {args!r})")
    module = load_module(path)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigFileError(f"config file {path} defines no get_config()")
    call_args = (arg,) if arg is not None else args
    return get_config(*call_args)
