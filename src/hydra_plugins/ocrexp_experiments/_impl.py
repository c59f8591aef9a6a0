from __future__ import annotations

import os
from typing import List, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

GROUP = "experiment"
SCHEME = "ocrexp-experiments"


class ExperimentsConfigSource(ConfigSource):
    """A directory of YAML files served as the ``experiment`` group."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def _real(self, config_path: str) -> Optional[str]:
        """Map a Hydra config path to a file in the directory, or None outside the group."""
        config_path = config_path.strip("/")
        if config_path == GROUP:
            return self.path
        if config_path.startswith(GROUP + "/"):
            return os.path.join(self.path, config_path[len(GROUP) + 1 :])
        return None

    def load_config(self, config_path: str) -> ConfigResult:
        real = self._real(self._normalize_file_name(config_path))
        if real is None or not os.path.isfile(real):
            raise ConfigLoadError(f"Config not found : {config_path}")
        with open(real, encoding="utf-8") as f:
            header = self._get_header_dict(f.read(512))  # a `# @package ...` line leads the file
            f.seek(0)
            config = OmegaConf.load(f)
        return ConfigResult(config=config, path=f"{self.scheme()}://{self.path}", provider=self.provider,
                            header=header)

    def available(self) -> bool:
        return os.path.isdir(self.path)

    def is_group(self, config_path: str) -> bool:
        if config_path.strip("/") == "":
            return True
        real = self._real(config_path)
        return real is not None and os.path.isdir(real)

    def is_config(self, config_path: str) -> bool:
        real = self._real(self._normalize_file_name(config_path))
        return real is not None and os.path.isfile(real)

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        if config_path.strip("/") == "":
            return [GROUP] if results_filter in (None, ObjectType.GROUP) else []
        real = self._real(config_path)
        if real is None or not os.path.isdir(real):
            return []
        files: List[str] = []
        for name in os.listdir(real):
            if name.endswith(".yaml") and os.path.isfile(os.path.join(real, name)):
                self._list_add_result(files, os.path.join(config_path, name), name, results_filter)
        return sorted(set(files))


class ExperimentsSearchPath(SearchPathPlugin):
    """Adds the project's and the package's experiment directories to every ocrexp app."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        try:
            from ocrexp.paths import conf_dir, experiments_dir, project_root
        except ImportError:  # another Hydra app in an environment that has this plugin
            return
        ours = str(conf_dir().resolve())
        if not any(e.path and e.path.rstrip("/").endswith(ours) for e in search_path.get_path()):
            return
        dirs = [project_root() / "experiments", experiments_dir()]
        seen = set()
        for d in dirs:
            if d.is_dir() and d.resolve() not in seen:
                seen.add(d.resolve())
                search_path.append("ocrexp-experiments", f"{SCHEME}://{d.resolve()}")
