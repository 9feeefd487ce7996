"""The conflict store: one record per unresolved conflict, written by the running sync and read
and changed by ``podsync conflicts`` in another process at the same time, without a lock.

Owns: the layout of ``<state_dir>/conflicts/``, :class:`ConflictRecord` and its JSON form,
:class:`ConflictStore` (atomic put, list, claim, settle). May import: the standard library,
``podsync.engine.status`` (pid check).

Layout::

    conflicts/<UTC stamp>[.n]/<path>   a saved container version (one folder per batch)
    conflicts/open/<key>.json          one record per unresolved conflict
    conflicts/settled/<key>.json       a container version the user already decided about

``key`` is a hash of (local sync folder, path): a path has at most one open record; a newer
conflict at the same path replaces it and lists the older saved copies in ``earlier``.

Why one small file per conflict (and not one JSON file or a journal): the two writers never
touch the same bytes. The sync creates or replaces a record with temp file + rename, so a
reader sees the old record or the new one, never half of one. A resolver first *claims* a
record by renaming it to ``<key>.json.claim-<pid>-<random>`` (rename is atomic: of two
resolvers, one gets it, the other finds nothing), acts, then deletes its claim; a new
conflict the sync records meanwhile is a new file, untouched by the claim. A claim left by a
resolver that died is given back by the next reader. One shared file would need a lock (or a
read-modify-write race) between the sync and the CLI; an append-only journal would need
replaying on every read and a compaction that again needs a lock.

Settled records answer one question for the sync: "the user already chose, for this path,
about *this* container version": when a resolution leaves the container's version in the
container (an initial-sync conflict), the sync's next upload of the path must not save that
version again as a new conflict. The sync consumes the settled record at that moment.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from podsync.engine.status import pid_alive

RECORD_VERSION = 1
CLAIM = ".claim-"
#: Settled records older than this are dropped by the CLI (the sync consumes them sooner).
SETTLED_MAX_AGE_SECONDS = 30 * 24 * 3600


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def key_of(root: str, path: str) -> str:
    return hashlib.sha256(f"{root}\0{path}".encode("utf-8", "surrogateescape")).hexdigest()[:24]


@dataclass(frozen=True)
class Version:
    """One side's version of a file: enough to show it and to recognise it again."""

    size: int
    mtime_ns: int

    def to_json(self) -> dict[str, int]:
        return {"size": self.size, "mtime_ns": self.mtime_ns}

    @classmethod
    def from_json(cls, raw: Any) -> Version | None:
        if raw is None:
            return None
        size, mtime = raw["size"], raw["mtime_ns"]
        if not isinstance(size, int) or not isinstance(mtime, int) or size < 0:
            raise ValueError("bad version")
        return cls(size, mtime)


@dataclass(frozen=True)
class ConflictRecord:
    """An unresolved conflict at ``path`` of the local sync folder ``root``.

    ``local``: the local version when the conflict was found (None: absent locally); it stays
    in place locally. ``container``: the container's version kept apart; ``copy`` is where it
    was saved (absolute). ``in_container``: the container still holds that version too (an
    initial-sync conflict: both sides were left as they were). ``local_in_container``: the
    container now holds the local version (a watch-phase conflict: the local one won there).
    """

    root: str
    path: str
    when: str
    reason: str
    local: Version | None
    container: Version | None
    copy: str | None
    in_container: bool = False
    local_in_container: bool = False
    earlier: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return key_of(self.root, self.path)

    @property
    def local_file(self) -> Path:
        return Path(self.root, *self.path.split("/"))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "root": self.root,
            "path": self.path,
            "when": self.when,
            "reason": self.reason,
            "local": self.local.to_json() if self.local else None,
            "container": self.container.to_json() if self.container else None,
            "copy": self.copy,
            "in_container": self.in_container,
            "local_in_container": self.local_in_container,
            "earlier": list(self.earlier),
        }

    @classmethod
    def from_json(cls, raw: Any) -> ConflictRecord:
        if not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION:
            raise ValueError("not a conflict record of this version")
        root, path, when, reason = (raw[k] for k in ("root", "path", "when", "reason"))
        copy, earlier = raw.get("copy"), raw.get("earlier", [])
        texts = (root, path, when, reason)
        if not all(isinstance(t, str) for t in texts) or not isinstance(earlier, list):
            raise ValueError("bad conflict record")
        if copy is not None and not isinstance(copy, str):
            raise ValueError("bad conflict record")
        return cls(
            root=root,
            path=path,
            when=when,
            reason=reason,
            local=Version.from_json(raw.get("local")),
            container=Version.from_json(raw.get("container")),
            copy=copy,
            in_container=bool(raw.get("in_container")),
            local_in_container=bool(raw.get("local_in_container")),
            earlier=tuple(str(e) for e in earlier),
        )

    def copies(self) -> list[Path]:
        """Every saved container version of this path that still exists, newest first."""
        found = [self.copy] if self.copy else []
        return [Path(p) for p in [*found, *reversed(self.earlier)] if os.path.isfile(p)]


@dataclass(frozen=True)
class Claim:
    """A record taken out of the open set by one resolver (see the module docstring)."""

    record: ConflictRecord
    file: Path


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _read(path: Path) -> ConflictRecord | None:
    try:
        return ConflictRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # gone meanwhile, or not ours: never an error for the reader


class ConflictStore:
    """``<state_dir>/conflicts``: saved copies and records (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.open_dir = self.folder / "open"
        self.settled_dir = self.folder / "settled"

    # -- the sync's side --------------------------------------------------------------------
    def copy_folder(self) -> Path:
        """A new, empty ``<UTC stamp>[.n]`` folder: a copy saved earlier is never replaced."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.folder.mkdir(parents=True, exist_ok=True)
        n = 0
        while True:
            root = self.folder / (stamp if n == 0 else f"{stamp}.{n}")
            try:
                root.mkdir()
                return root
            except FileExistsError:
                n += 1

    def get(self, root: str, path: str) -> ConflictRecord | None:
        return _read(self.open_dir / f"{key_of(root, path)}.json")

    def put(self, record: ConflictRecord) -> ConflictRecord:
        """Create or replace the record of ``record.path``; copies the replaced record saved
        stay listed in ``earlier``. Returns what was written."""
        old = self.get(record.root, record.path)
        if old is not None:
            earlier = [*old.earlier, *([old.copy] if old.copy else []), *record.earlier]
            kept = tuple(dict.fromkeys(e for e in earlier if e != record.copy))
            record = replace(record, earlier=kept)
        _write_atomically(self.open_dir / f"{record.key}.json", record.to_json())
        return record

    def take_settled(self, root: str, path: str, container: Version) -> bool:
        """True when the user already decided about this container version of ``path`` (the
        settled record is consumed; one about another version is stale and dropped too)."""
        file = self.settled_dir / f"{key_of(root, path)}.json"
        record = _read(file)
        if record is None:
            return False
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
        return record.container == container

    # -- the CLI's side ---------------------------------------------------------------------
    def records(self, root: str | None = None) -> list[ConflictRecord]:
        """The open records (of one local sync folder, or all), sorted by folder and path."""
        self._give_back_stale_claims()
        try:
            names = sorted(os.listdir(self.open_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = [_read(self.open_dir / n) for n in names if n.endswith(".json")]
        return sorted(
            (r for r in found if r is not None and (root is None or r.root == root)),
            key=lambda r: (r.root, r.path),
        )

    def counts(self) -> Counter[str]:
        """Open records per local sync folder."""
        return Counter(r.root for r in self.records())

    def claim(self, record: ConflictRecord) -> Claim | None:
        """Take ``record``'s file out of the open set (None: someone else took it first)."""
        src = self.open_dir / f"{record.key}.json"
        dst = self.open_dir / f"{record.key}.json{CLAIM}{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return None
        current = _read(dst)
        if current is None:  # unreadable: put it back as it was
            os.rename(dst, src)
            return None
        return Claim(current, dst)

    def finish(self, claim: Claim) -> None:
        """The claimed conflict is resolved: its record is gone for good."""
        with contextlib.suppress(FileNotFoundError):
            claim.file.unlink()

    def give_back(self, claim: Claim) -> None:
        """Resolution failed: the record is open again (merged into a newer one if the sync
        recorded the path again meanwhile)."""
        target = self.open_dir / f"{claim.record.key}.json"
        try:
            os.link(claim.file, target)  # fails instead of replacing a newer record
        except FileExistsError:
            newer = self.get(claim.record.root, claim.record.path)
            if newer is not None:
                older = (*claim.record.earlier, *filter(None, [claim.record.copy]))
                self.put(replace(newer, earlier=(*older, *newer.earlier)))
        self.finish(claim)

    def settle(self, record: ConflictRecord) -> None:
        """Remember that the user decided about ``record.container`` (see the docstring)."""
        _write_atomically(self.settled_dir / f"{record.key}.json", record.to_json())

    def unsettle(self, record: ConflictRecord) -> None:
        """Forget a decision that could not be carried out."""
        with contextlib.suppress(FileNotFoundError):
            (self.settled_dir / f"{record.key}.json").unlink()

    def prune_settled(self, max_age: float = SETTLED_MAX_AGE_SECONDS) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for item in self.settled_dir.iterdir():
                with contextlib.suppress(OSError):
                    if time.time() - item.stat().st_mtime > max_age:
                        item.unlink()

    def _give_back_stale_claims(self) -> None:
        try:
            names = os.listdir(self.open_dir)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            _, sep, owner = name.partition(CLAIM)
            if not sep:
                continue
            pid = owner.split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                record = _read(self.open_dir / name)
                if record is not None:
                    self.give_back(Claim(record, self.open_dir / name))
