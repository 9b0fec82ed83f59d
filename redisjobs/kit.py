"""Point an NVFlare server's startup kit at redisjobs (``redisjobs nvflare configure``).

NVFlare reads the server's components from ``<kit>/local/resources.json``, or from
``resources.json.default`` when there is no ``resources.json``. Exactly one entry there has
``"id": "job_manager"``; ``configure`` edits that entry in place (a second entry with the same id
would be an error to NVFlare), keeps ``uri_root`` and ``job_store_id`` (POC and deploy tooling
write them), and saves the original file beside it first, once. ``revert`` puts the original back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from typing import Any

ADAPTER = "redisjobs.nvflare.RedisJobDefManager"
BACKUP_SUFFIX = ".redisjobs-backup"


class KitError(ValueError):
    """A startup kit that cannot be configured, with what to do about it."""


def resources_file(kit: str) -> str:
    """The resources file NVFlare reads for this kit."""
    local = os.path.join(kit, "local")
    for name in ("resources.json", "resources.json.default"):
        path = os.path.join(local, name)
        if os.path.isfile(path):
            return path
    raise KitError(f"no local/resources.json(.default) under {kit!r}: give the server's startup kit folder")


def _job_manager_entry(config: Any, path: str) -> dict[str, Any]:
    """The one ``job_manager`` entry, checked to be editable (before anything is written)."""
    components = config.get("components", []) if isinstance(config, dict) else None
    if not isinstance(components, list):
        raise KitError(f"{path} is not an NVFlare resources file: expected an object with a components list")
    entries = [c for c in components if isinstance(c, dict) and c.get("id") == "job_manager"]
    if len(entries) != 1:
        raise KitError(f"{path} has {len(entries)} job_manager entries; expected exactly one")
    if not isinstance(entries[0].get("args") or {}, dict):
        raise KitError(f"{path}: the job_manager entry's 'args' is not an object")
    return entries[0]


def configure(kit: str, url: str, namespace: str = "redisjobs") -> str:
    """Switch the kit's ``job_manager`` to redisjobs at ``url``; return the file edited."""
    path = resources_file(kit)
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    entry = _job_manager_entry(config, path)
    backup = path + BACKUP_SUFFIX
    if not os.path.exists(backup):
        shutil.copy2(path, backup)
    args = dict(entry.get("args") or {})
    args.update({"url": url, "namespace": namespace})
    entry["path"] = ADAPTER
    entry["args"] = args
    # The new file keeps the old one's permissions (it may now hold a Redis password in the URL):
    # made owner-only, then given the old mode, before anything is written to it.
    tmp = path + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    with open(fd, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def revert(kit: str) -> str:
    """Restore the resources file saved by ``configure``; return the file restored."""
    path = resources_file(kit)
    backup = path + BACKUP_SUFFIX
    if not os.path.exists(backup):
        raise KitError(f"no backup {backup!r}: this kit was not configured by redisjobs")
    os.replace(backup, path)
    return path
