"""Typed shape of the parts of devspace.yaml that podsync reads.

Owns: the pydantic models of ``images``, ``deployments`` (container selection only) and
``dev.sync[*]`` with every option of the spec and its default (and DevSpace's later
``onUpload.exec``), and :class:`ProjectConfig`, the validated result of
:func:`podsync.config.loader.load_config`.
May import: pydantic and the standard library.

Sections podsync does not use are ignored (``extra="ignore"``) so real projects load; inside a
``dev.sync`` entry, ``bandwidthLimits`` and ``onUpload`` unknown keys are errors
(``extra="forbid"``) because a typo there silently changes what gets synced. Every model is
strict: YAML ``1`` is not a string, ``true`` is not a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

_IGNORE = ConfigDict(extra="ignore", strict=True, frozen=True)
_FORBID = ConfigDict(extra="forbid", strict=True, frozen=True)


class ImageConfig(BaseModel):
    """``images.<name>``: only ``image`` matters for container selection."""

    model_config = _IGNORE
    image: str


class ComponentContainer(BaseModel):
    """``deployments[*].component.containers[*]``."""

    model_config = _IGNORE
    name: str | None = None
    image: str


class Component(BaseModel):
    model_config = _IGNORE
    containers: list[ComponentContainer] = Field(default_factory=list)


class Deployment(BaseModel):
    """``deployments[*]``; helm/kubectl deployments load and have ``component`` None."""

    model_config = _IGNORE
    name: str
    component: Component | None = None


class BandwidthLimits(BaseModel):
    """``dev.sync[*].bandwidthLimits`` in KB/s (1 KB = 1024 bytes); None = unlimited."""

    model_config = _FORBID
    download: int | None = Field(default=None, gt=0)
    upload: int | None = Field(default=None, gt=0)


class ExecConfig(BaseModel):
    """``dev.sync[*].onUpload.exec[*]``: a command run in the container after an upload.

    ``command`` is optional here only so that a misspelt key is reported before the missing
    command (``checks`` requires it). ``on_change`` None: after every batch that uploaded
    something.
    """

    model_config = _FORBID
    command: str | None = None
    on_change: list[str] | None = Field(default=None, alias="onChange")

    def on_change_patterns(self) -> tuple[str, ...] | None:
        """``onChange`` as gitignore patterns relative to the sync root: a leading ``./``
        (DevSpace's way to name the root's own file) becomes the anchoring ``/``."""
        if self.on_change is None:
            return None
        return tuple(anchor_dot_slash(p) for p in self.on_change)


def anchor_dot_slash(pattern: str) -> str:
    """``./package.json`` -> ``/package.json`` (also after a ``!``); other patterns as written.
    Git itself never matches a ``.`` segment, so this reading takes nothing away."""
    negate = "!" if pattern.startswith("!") else ""
    body = pattern[len(negate) :]
    if not body.startswith("./"):
        return pattern
    while body.startswith("./"):
        body = body[2:]
    return f"{negate}/{body}"


class OnUploadConfig(BaseModel):
    """``dev.sync[*].onUpload``: only ``exec`` (DevSpace's later shape); ``exec:`` left empty
    means no commands."""

    model_config = _FORBID
    exec: list[ExecConfig] = Field(default_factory=list)

    @field_validator("exec", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class SyncConfig(BaseModel):
    """One ``dev.sync[*]`` entry, defaults as in the spec."""

    model_config = _FORBID
    image_name: str | None = Field(default=None, alias="imageName")
    label_selector: dict[str, str] | None = Field(default=None, alias="labelSelector")
    container_name: str | None = Field(default=None, alias="containerName")
    namespace: str | None = None
    local_sub_path: str = Field(default="./", alias="localSubPath")
    container_path: str | None = Field(default=None, alias="containerPath")
    exclude_paths: list[str] = Field(default_factory=list, alias="excludePaths")
    download_exclude_paths: list[str] = Field(default_factory=list, alias="downloadExcludePaths")
    upload_exclude_paths: list[str] = Field(default_factory=list, alias="uploadExcludePaths")
    download_on_initial_sync: bool = Field(default=False, alias="downloadOnInitialSync")
    wait_initial_sync: bool = Field(default=False, alias="waitInitialSync")
    bandwidth_limits: BandwidthLimits | None = Field(default=None, alias="bandwidthLimits")
    on_upload: OnUploadConfig | None = Field(default=None, alias="onUpload")


#: The YAML spelling of every dev.sync option, for "did you mean" suggestions.
SYNC_OPTIONS: tuple[str, ...] = tuple(
    f.alias or name for name, f in SyncConfig.model_fields.items()
)
BANDWIDTH_OPTIONS: tuple[str, ...] = tuple(BandwidthLimits.model_fields)
ON_UPLOAD_OPTIONS: tuple[str, ...] = tuple(OnUploadConfig.model_fields)
EXEC_OPTIONS: tuple[str, ...] = tuple(
    f.alias or name for name, f in ExecConfig.model_fields.items()
)


class DevConfig(BaseModel):
    """``dev``: only ``sync`` is read; ports, open, interactive... are ignored."""

    model_config = _IGNORE
    sync: list[SyncConfig] = Field(default_factory=list)


class DevspaceFile(BaseModel):
    """The whole file; version, hooks, profiles, commands, vars... are ignored."""

    model_config = _IGNORE
    images: dict[str, ImageConfig] = Field(default_factory=dict)
    deployments: list[Deployment] = Field(default_factory=list)
    dev: DevConfig = Field(default_factory=DevConfig)


@dataclass(frozen=True)
class ProjectConfig:
    """A loaded and fully validated devspace.yaml.

    ``path`` is absolute; ``display`` is the name errors use (as the user gave it).
    ``sync_positions`` holds the 1-based (line, column) of each ``dev.sync`` entry.
    """

    path: Path
    display: str
    images: dict[str, ImageConfig]
    deployments: tuple[Deployment, ...]
    sync: tuple[SyncConfig, ...]
    sync_positions: tuple[tuple[int, int], ...] = ()

    @property
    def root(self) -> Path:
        """The project folder: the one holding devspace.yaml."""
        return self.path.parent

    def local_path(self, entry: SyncConfig) -> Path:
        """Absolute local folder of ``entry`` (localSubPath resolved against the project)."""
        return (self.root / entry.local_sub_path).resolve()
