"""Loading the Lua scripts in ``redisjobs/lua/``.

Each script is one file, ``<name>-<numkeys>.lua``, opening with a comment block that documents its
KEYS, ARGV and Output. A line ``-- @include "x"`` pulls in ``lua/includes/x.lua``; placeholders
``@@STATUSES@@``, ``@@TRANSITIONS@@`` and ``@@TIMED@@`` become Lua tables generated from
``_lifecycle`` (the one place the status rules live). Sources are read once per process; each
manager registers them once on its client (redis-py ``Script``: EVALSHA, reloaded on NOSCRIPT).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

from redis.commands.core import Script

from ._connection import is_cluster
from ._lifecycle import TIMED_FINISH, lua_status_list, lua_transition_table

_INCLUDE = re.compile(r'^-- @include "([a-z_]+)"$', re.MULTILINE)


def _read(relative: str) -> str:
    return resources.files("redisjobs").joinpath("lua").joinpath(relative).read_text(encoding="utf-8")


def _placeholders() -> dict[str, str]:
    timed = "{" + ",".join(f'["{s}"]=true' for s in sorted(TIMED_FINISH)) + "}"
    return {
        "@@STATUSES@@": lua_status_list(),
        "@@TRANSITIONS@@": lua_transition_table(),
        "@@TIMED@@": timed,
    }


@functools.cache
def script_files() -> dict[str, str]:
    """``{file name: raw source}`` of every script (not the includes)."""
    folder = resources.files("redisjobs").joinpath("lua")
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua") and entry.is_file()
    }


@functools.cache
def source(file_name: str) -> str:
    """The runnable source of one script: includes expanded, placeholders filled."""
    text = script_files()[file_name]
    text = _INCLUDE.sub(lambda m: _read(f"includes/{m.group(1)}.lua"), text)
    for placeholder, value in _placeholders().items():
        text = text.replace(placeholder, value)
    return text


class Scripts:
    """The scripts registered on one client, as attributes named after the files."""

    def __init__(self, client: Any) -> None:
        self.by_name: dict[str, Script] = {}
        for file_name in script_files():
            name = file_name.rsplit("-", 1)[0]
            self.by_name[name] = client.register_script(source(file_name))
        # Load them all in one round trip now, rather than one NOSCRIPT miss per script later. (A
        # cluster sends SCRIPT LOAD to every primary itself, outside pipelines.)
        if is_cluster(client):
            for script in self.by_name.values():
                client.script_load(script.script)
        else:
            pipe = client.pipeline(transaction=False)
            for script in self.by_name.values():
                pipe.script_load(script.script)
            pipe.execute()
        self.create = self.by_name["create"]
        self.update = self.by_name["update"]
        self.approve = self.by_name["approve"]
        self.delete = self.by_name["delete"]
        self.commit_blob = self.by_name["commitBlob"]
        self.save_record = self.by_name["saveRecord"]
        self.mark_record_deleted = self.by_name["markRecordDeleted"]
        self.claim = self.by_name["claim"]
        self.renew = self.by_name["renew"]
        self.settle = self.by_name["settle"]
        self.get_jobs = self.by_name["getJobs"]
        self.due_leases = self.by_name["dueLeases"]
