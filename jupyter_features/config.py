"""Settings, built once: arguments, then environment variables, then features.toml."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from .errors import ConfigError

__all__ = ["Settings", "load_settings", "STATE_DIR"]

#: Folder under a workspace root that holds the embedded defaults.
STATE_DIR = ".jupyter_features"

_ENV_REGISTRY = "JUPYTER_FEATURES_REGISTRY"
_ENV_ONLINE = "JUPYTER_FEATURES_ONLINE_STORE"
_ENV_TOKEN = "JUPYTER_FEATURES_TOKEN"
_ENV_ENGINE = "JUPYTER_FEATURES_ENGINE"
_ENV_SPARK_MASTER = "JUPYTER_FEATURES_SPARK_MASTER"
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    root: Path
    registry_url: str
    online_store_url: str
    token: str | None
    engine: str
    #: DuckDB's memory limit (e.g. "3GB"): past it, DuckDB spills to ``temp_directory``.
    memory_limit: str | None = None
    threads: int | None = None
    temp_directory: str | None = None
    #: The Spark engine's master URL (``spark://host:7077``, ``yarn``, ``k8s://...``); None: the
    #: active SparkSession, else ``local[*]``.
    spark_master: str | None = None
    #: Spark settings for a session the Spark engine starts (``spark.executor.memory`` ...).
    spark_conf: Mapping[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR


def _read_toml(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or remove it") from exc


def _section_url(data: Mapping[str, object], section: str, path: Path) -> str | None:
    value = data.get(section)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("url", ""), str):
        raise ConfigError(f"{path}: [{section}] must be a table with a string 'url'")
    url = value.get("url")
    return str(url) if url else None


def _spark_settings(section: Mapping[str, object], path: Path) -> tuple[str | None, dict[str, str]]:
    """``[engine] master`` and ``spark_conf`` (a table of spark.* keys to strings, numbers or booleans)."""
    master = section.get("master")
    if master is not None and not (isinstance(master, str) and master.strip()):
        raise ConfigError(f'{path}: [engine] master must be a Spark master URL, e.g. "spark://host:7077"')
    raw = section.get("spark_conf", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f'{path}: [engine] spark_conf must be a table, e.g. {{ "spark.executor.memory" = "4g" }}'
        )
    conf: dict[str, str] = {}
    for key, value in raw.items():
        if not str(key).startswith("spark."):
            raise ConfigError(f"{path}: [engine] spark_conf key {key!r} is not a Spark setting (spark.*)")
        if isinstance(value, bool):
            conf[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            conf[key] = str(value)
        else:
            raise ConfigError(f"{path}: [engine] spark_conf {key!r} must be a string, number or boolean")
    return (master.strip() if isinstance(master, str) else None), conf


def _sqlite_url(root: Path, name: str) -> str:
    return f"sqlite:///{(root / STATE_DIR / name).as_posix()}"


def _absolute_sqlite(url: str, root: Path) -> str:
    """Make a relative sqlite:///path URL relative to the workspace root."""
    prefix = "sqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        if rest and not rest.startswith("/") and rest != ":memory:":
            return prefix + (root / rest).as_posix()
    return url


def load_settings(
    root: str | os.PathLike[str] = ".",
    *,
    registry: str | None = None,
    online_store: str | None = None,
    token: str | None = None,
    engine: str | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings of a workspace rooted at ``root``."""
    env = os.environ if environ is None else environ
    root_path = Path(root).expanduser().resolve()
    toml_path = root_path / "features.toml"
    data = _read_toml(toml_path)
    registry_url = (
        registry
        or env.get(_ENV_REGISTRY)
        or _section_url(data, "registry", toml_path)
        or _sqlite_url(root_path, "registry.db")
    )
    online_url = (
        online_store
        or env.get(_ENV_ONLINE)
        or _section_url(data, "online_store", toml_path)
        or _sqlite_url(root_path, "online.db")
    )
    engine_section = data.get("engine") or {}
    if not isinstance(engine_section, Mapping):
        raise ConfigError(f'{toml_path}: [engine] must be a table, e.g. name = "duckdb"')
    toml_engine = engine_section.get("name")
    memory_limit = memory_limit if memory_limit is not None else engine_section.get("memory_limit")
    if memory_limit is not None and not (isinstance(memory_limit, str) and _MEMORY.match(memory_limit)):
        raise ConfigError(
            f'memory_limit {memory_limit!r} is not a size; write e.g. "3GB", "512MB" or "80%" '
            f"(in {toml_path} [engine] or jf.Workspace(memory_limit=...))"
        )
    threads = threads if threads is not None else engine_section.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads {threads!r} must be a whole number of at least 1 ({toml_path} [engine])")
    temp_directory = temp_directory if temp_directory is not None else engine_section.get("temp_directory")
    if temp_directory is not None:
        if not isinstance(temp_directory, (str, os.PathLike)):
            raise ConfigError(
                f"temp_directory {temp_directory!r} must be a folder path ({toml_path} [engine])"
            )
        folder = Path(temp_directory).expanduser()
        temp_directory = str(folder if folder.is_absolute() else root_path / folder)
    spark_master, spark_conf = _spark_settings(engine_section, toml_path)
    return Settings(
        root=root_path,
        registry_url=_absolute_sqlite(registry_url, root_path),
        online_store_url=_absolute_sqlite(online_url, root_path),
        token=token or env.get(_ENV_TOKEN) or None,
        engine=str(engine or env.get(_ENV_ENGINE) or toml_engine or "duckdb"),
        memory_limit=memory_limit.replace(" ", "") if memory_limit else None,
        threads=threads,
        temp_directory=temp_directory,
        spark_master=env.get(_ENV_SPARK_MASTER) or spark_master,
        spark_conf=spark_conf,
    )
