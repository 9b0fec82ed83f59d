"""Loading the Lua scripts in ``redisjobs/lua/``.

Each script is one file, ``<name>-<numkeys>.lua``, opening with a comment block that documents its
KEYS, ARGV and Output. A line ``-- @include "x"`` pulls in the definitions of
``lua/includes/x.lua`` that the script uses; placeholders ``@@STATUS_COUNT@@``,
``@@STATUS_POSITIONS@@``, ``@@TRANSITIONS@@``, ``@@TIMED@@`` and ``@@SOURCE_RANKS@@`` become
constants generated from ``_lifecycle`` (the one place the status rules live). Sources are read
once per process; each manager registers them once on its client (EVALSHA, reloaded on NOSCRIPT),
and over its lane calls them as functions of one library where the server loads it (``library``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from ._connection import Lane, bulks, is_cluster, pack
from ._lifecycle import STATUSES, lua_source_ranks, lua_status_positions, lua_timed, lua_transitions

_INCLUDE = re.compile(r'^-- @include "([a-z_]+)"$', re.MULTILINE)


def _read(relative: str) -> str:
    return resources.files("redisjobs").joinpath("lua").joinpath(relative).read_text(encoding="utf-8")


def _placeholders() -> dict[str, str]:
    return {
        "@@STATUS_COUNT@@": str(len(STATUSES)),
        "@@STATUS_POSITIONS@@": lua_status_positions(),
        "@@TRANSITIONS@@": lua_transitions(),
        "@@TIMED@@": lua_timed(),
        "@@SOURCE_RANKS@@": lua_source_ranks(),
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
    """The runnable source of one script: includes expanded (only the definitions it uses),
    placeholders filled."""
    text = script_files()[file_name]
    names = _INCLUDE.findall(text)
    units = [unit for name in names for unit in _units(_read(f"includes/{name}.lua"))]
    kept = "".join(unit for unit, _ in _used(units, _identifiers(_INCLUDE.sub("", text))))
    first = _INCLUDE.search(text)
    if first is not None:  # every include's kept definitions go where the first include was
        text = text[: first.start()] + kept + _INCLUDE.sub("", text[first.end() :])
    return _filled(text)


def _filled(text: str) -> str:
    """``text`` with the status-rule placeholders replaced by their constants."""
    for placeholder, value in _placeholders().items():
        text = text.replace(placeholder, value)
    return text


_LOCAL = re.compile(r"^local (?:function )?([A-Za-z_][\w, ]*?)\s*(?:=|\(|$)", re.MULTILINE)
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _identifiers(text: str) -> set[str]:
    return set(_IDENTIFIER.findall(text))


def _units(include: str) -> list[tuple[str, frozenset[str]]]:
    """An include's top-level definitions (``local function f`` or ``local A, B = ...`` at the start
    of a line, up to the next one), each with the names it defines; comments go with the unit
    before them, and whatever precedes the first definition (the include's header) is dropped."""
    starts = [m.start() for m in _LOCAL.finditer(include)]
    out = []
    for start, end in zip(starts, [*starts[1:], len(include)], strict=True):
        unit = include[start:end]
        match = _LOCAL.match(unit)
        assert match is not None
        out.append((unit, frozenset(name.strip() for name in match.group(1).split(","))))
    return out


def _used(units: list[tuple[str, frozenset[str]]], wanted: set[str]) -> list[tuple[str, frozenset[str]]]:
    """The units that define a name in ``wanted``, or one that a kept unit uses, in their order.

    A script runs its whole source on every call, so every ``local function`` in it makes a
    closure every time (about 0.8k server instructions each, and garbage): a script gets only the
    helpers it calls."""
    wanted = set(wanted)
    kept: set[int] = set()
    while True:
        more = {i for i, (_, defines) in enumerate(units) if i not in kept and defines & wanted}
        if not more:
            return [unit for i, unit in enumerate(units) if i in kept]
        kept |= more
        for i in more:
            wanted |= _identifiers(units[i][0])


@functools.cache
def library() -> tuple[str, str, dict[str, str]]:
    """Every script as one Redis Functions library (Redis 7 and later): ``(name, code, {script:
    function name})``.

    An EVAL script runs its whole source on every call, so each helper of its includes is made
    again as a closure every time; a library runs its top level once, when it is loaded, and a
    call (FCALL) runs only the function's body: about 24k server instructions less for a status
    change. The helpers are defined once at the top, after ``KEYS`` and ``ARGV``, which each
    function sets from its arguments before its body runs (the bodies and helpers use them as an
    EVAL script does). The name carries a digest of the code, so that managers of different
    versions of redisjobs on one server each call their own functions."""
    files = script_files()
    includes: list[str] = []  # (in the order the scripts name them: each names "common" first)
    for _, text in sorted(files.items()):
        includes += [name for name in _INCLUDE.findall(text) if name not in includes]
    top = "".join(unit for name in includes for unit, _ in _units(_read(f"includes/{name}.lua")))
    bodies = {}
    for file_name, text in sorted(files.items()):
        body = _INCLUDE.sub("", text[text.index("]]") + 2 :])
        bodies[file_name.rsplit("-", 1)[0]] = body
    code = f"#!lua name=redisjobs_@@DIGEST@@\nlocal KEYS, ARGV\n{top}"
    for name, body in bodies.items():
        code += f"\nredis.register_function('rj_@@DIGEST@@_{name}', function(keys, args)\n"
        code += f"KEYS, ARGV = keys, args\n{body}\nend)\n"
    code = _filled(code)
    digest = hashlib.sha1(code.encode()).hexdigest()[:12]  # (of everything, the status rules too)
    functions = {name: f"rj_{digest}_{name}" for name in bodies}
    return f"redisjobs_{digest}", code.replace("@@DIGEST@@", digest), functions


#: The name of a library that ``library()`` of some version of redisjobs made.
_LIBRARY_NAME = re.compile(rb"redisjobs_[0-9a-f]{12}")


def drop_old_libraries(client: Any) -> list[str]:
    """Delete from the server the function libraries of other versions of redisjobs, and return
    their names; this version's stays.

    Every version loads a library of its own (named by a digest of its code), and nothing deletes
    one: a server that has seen upgrades keeps every version's. A manager of another version that
    still runs loads its library again at its next call (one more round trip), as after a
    restart, so dropping them is safe while servers run. Function libraries belong to the whole
    server, not to a namespace: this needs a user who may run ``FUNCTION LIST`` and
    ``FUNCTION DELETE`` (the namespace users of ``redisjobs.acl`` may not). Nothing to drop, and
    ``[]``, where the server has no functions (Redis before 7) or on a cluster, where a manager
    never loads them."""
    if is_cluster(client):
        return []
    try:
        listed = client.function_list(library="redisjobs_*")
    except redis.exceptions.ResponseError as e:
        if "unknown command" in str(e).lower():
            return []
        raise
    current = library()[0].encode()
    dropped = []
    for entry in listed:
        # (a flat list of field, value; over RESP3 a map)
        fields = entry if isinstance(entry, dict) else dict(zip(entry[::2], entry[1::2], strict=True))
        name = fields.get(b"library_name", fields.get("library_name"))
        name = name.encode() if isinstance(name, str) else name
        if isinstance(name, bytes) and _LIBRARY_NAME.fullmatch(name) and name != current:
            try:
                client.function_delete(name)
            except redis.exceptions.ResponseError as e:
                if "library not found" not in str(e).lower():  # (another process dropped it first)
                    raise
                continue
            dropped.append(name.decode())
    return sorted(dropped)


def _function_missing(error: Exception) -> bool:
    """Whether an error reply says the script or function called is not on the server (flushed,
    or a restarted server without persistence): load it, and send again."""
    return isinstance(error, redis.exceptions.NoScriptError) or (
        isinstance(error, redis.exceptions.ResponseError) and "Function not found" in str(error)
    )


def _cross_slot(error: Exception) -> bool:
    """Whether an error reply refuses keys of several hash slots (redis-py names the error by its
    CROSSSLOT code, and drops the code from the message)."""
    return isinstance(error, redis.exceptions.ClusterCrossSlotError) or str(error).startswith("CROSSSLOT")


def load_library(lane: Lane) -> bool:
    """Load ``library()`` on the lane's server; False if it cannot be (Redis before 7, a user
    without FUNCTION LOAD, a proxy that does not pass it): the caller runs EVAL scripts then."""
    try:
        lane.execute("FUNCTION", "LOAD", library()[1])
    except redis.exceptions.ResponseError as e:
        return "already exists" in str(e)  # (loaded by another manager: the same code, by its name)
    return True


#: Scripts that only read: they never wait for replicas.
READ_ONLY = frozenset({"getJobs", "dueLeases"})


class ReplicaTimeout(redis.exceptions.ConnectionError):
    """A write the master applied that fewer replicas than asked confirmed in time."""

    def __init__(self, acked: int, wanted: int, timeout_ms: int) -> None:
        self.acked, self.wanted, self.timeout_ms = acked, wanted, timeout_ms
        super().__init__(f"{acked} of {wanted} replicas confirmed the write within {timeout_ms} ms")


class Replicated:
    """A writing script followed by ``WAIT replicas timeout`` on the same connection (one pipeline,
    one round trip): the call returns once ``replicas`` replicas hold the write, else raises
    ``ReplicaTimeout``. WAIT covers every write the master applied before this one, whatever
    connection sent it: replication is one ordered stream."""

    def __init__(self, client: Any, script: Script, replicas: int, timeout_ms: int) -> None:
        self._client, self._script = client, script
        self.replicas, self.timeout_ms = replicas, timeout_ms

    #: Attempts when the server turns out to be a replica (a failover under way), and the pause
    #: between them: the Sentinels name the new master within a few seconds.
    REPLICA_ATTEMPTS, REPLICA_PAUSE = 20, 0.25

    def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        load = False
        for _ in range(self.REPLICA_ATTEMPTS):
            pipe = self._client.pipeline(transaction=False)
            if load:  # on this very connection: during a failover the next one may reach another node
                pipe.script_load(self._script.script)
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            pipe.wait(self.replicas, self.timeout_ms)
            try:
                *_, result, acked = pipe.execute()
            except redis.exceptions.NoScriptError:  # flushed, or a promoted replica
                load = True
                continue
            except redis.exceptions.ResponseError as e:
                # A replica answered (READONLY, or "WAIT cannot be used with replica instances"):
                # a failover is under way. Reconnect, so that the pool asks for the master again.
                if "replica" not in str(e).lower():
                    raise
                self._client.connection_pool.disconnect()
                time.sleep(self.REPLICA_PAUSE)
                continue
            if int(acked) < self.replicas:
                raise ReplicaTimeout(int(acked), self.replicas, self.timeout_ms)
            return result
        raise redis.exceptions.ConnectionError(
            f"the server stayed a replica for {self.REPLICA_ATTEMPTS * self.REPLICA_PAUSE:g} s: "
            "no master to write to"
        )


class LaneScript:
    """A script run over a ``Lane``: as a function of ``library()`` (FCALL) when ``function``
    names one, else EVALSHA; when the server answers that it has no such function or script (a
    flushed or restarted server), the library or the script is loaded and the call sent once
    more, as redis-py's ``Script`` does on NOSCRIPT."""

    def __init__(self, lane: Lane, script: Script, function: str | None = None) -> None:
        self._lane, self._script = lane, script
        self.sha, self.function = script.sha, function
        self._command = ("FCALL", function) if function else ("EVALSHA", script.sha)
        self._packed_name = bulks([part.encode() for part in self._command])

    def __call__(self, keys: list[Any], args: list[Any], repeat: list[Any] | None = None) -> Any:
        """Run it; with ``repeat`` given, the arguments that redis-py's retry sends instead of
        ``args`` when it sends the call again (see ``Lane.execute_packed``)."""
        try:
            return self._run(keys, args, repeat)
        except redis.exceptions.ResponseError as e:
            if not _function_missing(e):
                raise
            # This send did not run, but an earlier one may have: a retry that reached a restarted
            # server after the first send ran there is answered so too. So send it again as a
            # repeat (``repeat``, if given, looks for the first run's work).
            self._load()
            return self._run(keys, repeat if repeat is not None else args, None)

    def _run(self, keys: list[Any], args: list[Any], repeat: list[Any] | None) -> Any:
        if repeat is None:
            return self._lane.execute(*self._command, len(keys), *keys, *args)
        return self._lane.execute_or_repeat(
            (*self._command, len(keys), *keys, *args), (*self._command, len(keys), *keys, *repeat)
        )

    def run_packed(
        self, numkeys: int, count: int, body: bytes, first: bytes, repeat: bytes, then: bytes, more: int
    ) -> list[Any]:
        """The call with its keys and arguments packed already (``bulks``): ``count`` of them in
        ``body`` and then one more, ``first`` on the first send and ``repeat`` when redis-py's
        retry sends the call again (see ``Lane.execute_packed``); then ``more`` commands packed
        already (``then``), sent right after it in the same write, and again with every send of
        it. Returns the script's reply and theirs, in order."""
        number = b"%d" % numkeys
        head = b"*%d\r\n%b$%d\r\n%b\r\n" % (count + 4, self._packed_name, len(number), number)
        again = head + body + repeat + then
        try:
            return self._lane.execute_packed(head + body + first + then, 1 + more, again)
        except redis.exceptions.ResponseError as e:  # (sent again as a repeat: see __call__)
            if not _function_missing(e):
                raise
            self._load()
            return self._lane.execute_packed(again, 1 + more)

    #: Whether ``run_after`` may pass keys of other hash slots (see ``checked`` there): until a
    #: server refuses it (CROSSSLOT: a proxy in front of several shards, or a cluster node).
    cross_slot = True

    def run_after(
        self,
        head: list[bytes | memoryview],
        queued: int,
        build: Callable[[], tuple[list[Any], list[Any]]],
        checked: int = 0,
    ) -> tuple[Any, redis.exceptions.ResponseError | None]:
        """``queued`` commands packed in ``head``, then this script with the keys and arguments
        that ``build()`` returns, in one round trip. ``build`` runs once, after the head is sent,
        so its work overlaps the server's reading of it. Returns the script's reply and the first
        error reply to the head, if any; an error reply to the script is raised. The script runs
        whatever became of the head: it must check what it relies on (a blob's chunks: see
        ``PipedUpload``), and its reply says what happened (a retry's head may be refused where
        the first attempt's script had done the work).

        A retry (a connection lost) sends it all again, and it may have run: the script must then
        tell its own first run, and undo anything the head's second run redid that the first
        run's script undid (an upload's registration).

        The last ``checked`` keys are the head's, of another hash slot, given for the script to
        check. A server that refuses a script on keys of several slots (CROSSSLOT) gets it again
        without them, once every reply to the head is known good, and ``cross_slot`` turns false
        (the caller stops sending them so)."""
        call: list[list[Any]] = []

        def tail() -> list[bytes | memoryview]:
            if not call:
                call.extend(build())
            keys, args = call
            return pack(*self._command, len(keys), *keys, *args)

        *replies, reply = self._lane.execute_staged(head, tail, queued + 1)
        refused = next((r for r in replies if isinstance(r, redis.exceptions.ResponseError)), None)
        if isinstance(reply, redis.exceptions.ResponseError):
            keys, args = call
            if checked and _cross_slot(reply):
                self.cross_slot = False
                if refused is not None:
                    raise refused  # (the script did not run)
                # Every command of the head was done: what the script would check holds.
                return self(keys[: len(keys) - checked], args), None
            if not _function_missing(reply):
                raise reply
            # The head ran, the script did not: load it and run it alone.
            self._load()
            reply = self(keys, args)
        return reply, refused

    def _load(self) -> None:
        if self.function is None:
            self._lane.execute("SCRIPT", "LOAD", self._script.script)
        elif not load_library(self._lane):
            raise redis.exceptions.ResponseError(f"the server refused to load {library()[0]} again")


def run_marked(script: Any, keys: list[Any], first: list[Any], repeat: list[Any]) -> Any:
    """Run a script that keeps a request record with ``first`` as its arguments on a first send
    and ``repeat`` on a send that may repeat one that ran (they differ in a flag that tells the
    script whether to look for the record). Only a lane tells the two apart; any other caller
    (redis-py's ``Script``, ``Replicated``) sends ``repeat`` every time."""
    if isinstance(script, LaneScript):
        return script(keys, first, repeat=repeat)
    return script(keys=keys, args=repeat)


class Scripts:
    """The scripts registered on one client, as attributes named after the files.

    With ``replicas`` > 0, every writing script waits (``WAIT``) for that many replicas to confirm
    it, up to ``timeout_ms``. Over a ``lane`` (and without replicas to wait for), they are called
    as functions of ``library()`` when ``functions`` is true and the server loads it.
    """

    def __init__(
        self,
        client: Any,
        replicas: int = 0,
        timeout_ms: int = 1000,
        lane: Lane | None = None,
        functions: bool = True,
    ) -> None:
        self.by_name: dict[str, Script] = {}
        for file_name in script_files():
            name = file_name.rsplit("-", 1)[0]
            self.by_name[name] = client.register_script(source(file_name))
        # Over a lane (without replicas to wait for), as functions of one library where the
        # server loads it (see library()): then no call runs an EVAL script.
        use_library = lane is not None and replicas == 0 and functions and load_library(lane)
        if not use_library:
            # Load them all in one round trip now, rather than one NOSCRIPT miss per script later.
            # (A cluster sends SCRIPT LOAD to every primary itself, outside pipelines.)
            if is_cluster(client):
                for script in self.by_name.values():
                    client.script_load(script.script)
            else:
                pipe = client.pipeline(transaction=False)
                for script in self.by_name.values():
                    pipe.script_load(script.script)
                pipe.execute()
        run: dict[str, Any] = dict(self.by_name)
        if replicas > 0:
            for name, script in self.by_name.items():
                if name not in READ_ONLY:
                    run[name] = Replicated(client, script, replicas, timeout_ms)
                elif lane is not None:
                    run[name] = LaneScript(lane, script)
        elif lane is not None:
            names = library()[2] if use_library else {}
            run = {name: LaneScript(lane, script, names.get(name)) for name, script in self.by_name.items()}
        self.create = run["create"]
        self.update = run["update"]
        self.set_fields = run["setFields"]
        self.approve = run["approve"]
        self.delete = run["delete"]
        self.commit_blob = run["commitBlob"]
        self.save_record = run["saveRecord"]
        self.mark_record_deleted = run["markRecordDeleted"]
        self.claim = run["claim"]
        self.renew = run["renew"]
        self.settle = run["settle"]
        self.get_jobs = run["getJobs"]
        self.due_leases = run["dueLeases"]
