"""The Lua scripts: one file each, a header that documents them, and one source of status rules."""

from __future__ import annotations

import re

import pytest

from redisjobs import _scripts
from redisjobs._keys import Keys
from redisjobs._lifecycle import SOURCES, STATUSES, TRANSITIONS, allowed

FILES = sorted(_scripts.script_files())


def test_every_script_is_named_name_dash_numkeys() -> None:
    assert FILES, "no Lua scripts found in the package"
    for name in FILES:
        assert re.fullmatch(r"[a-z][A-Za-z]*-\d+\.lua", name), name


@pytest.mark.parametrize("name", FILES)
def test_header_documents_keys_argv_and_output(name: str) -> None:
    text = _scripts.script_files()[name]
    assert text.startswith("--[["), f"{name} must open with a comment block"
    header = text[: text.index("]]")]
    numkeys = int(name.rsplit("-", 1)[1].removesuffix(".lua"))
    documented = sorted({int(n) for n in re.findall(r"^\s*KEYS\[(\d+)\]", header, re.MULTILINE)})
    assert documented == list(range(1, numkeys + 1)), f"{name}: header documents KEYS {documented}"
    assert re.search(r"^\s*ARGV\[1\]", header, re.MULTILINE), f"{name}: no ARGV documented"
    assert "Output:" in header, f"{name}: no Output section"
    body = text[text.index("]]") :]
    used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
    assert used <= set(range(1, numkeys + 1)), f"{name} uses KEYS beyond its count: {sorted(used)}"


@pytest.mark.parametrize("name", FILES)
def test_sources_expand_fully(name: str) -> None:
    src = _scripts.source(name)
    assert "@@" not in src and "-- @include" not in src


def test_transition_table_is_compiled_into_lua() -> None:
    settle, update = _scripts.source("settle-16.lua"), _scripts.source("update-8.lua")
    for old in STATUSES:
        for new in TRANSITIONS[old]:
            assert f"|{old}>{new}|" in settle
            assert f"|{new}<{old}={SOURCES[new].index(old) + 1}|" in update
    for i, status in enumerate(STATUSES, 1):
        assert f"|{status}={i}|" in settle
    ranks = re.search(r'^local SOURCE_RANKS = "\|(.*)\|"$', update, re.MULTILINE)
    assert ranks and len(ranks.group(1).split("|")) == sum(map(len, TRANSITIONS.values()))
    assert allowed("FINISHED:ABORTED", "FINISHED:ABORTED")
    assert not allowed("FINISHED:ABORTED", "RUNNING")
    assert not allowed("SUBMITTED", "RUNNING")


def test_status_set_keys_follow_the_status_order() -> None:
    """Scripts that receive all 11 status sets get them in STATUSES order."""
    for name, first in (("delete-20.lua", 9), ("settle-16.lua", 6)):
        header = _scripts.script_files()[name]
        for i, status in enumerate(STATUSES):
            assert re.search(
                rf"KEYS\[{first + i}\]\s+status:{re.escape(status)}\s*$", header, re.MULTILINE
            ), (
                name,
                status,
            )


def test_a_status_change_passes_only_the_sets_it_can_touch() -> None:
    """The update script gets the new status's set, then those of the statuses that can move to
    it, in status order: every status that can move to it, and no other."""
    keys = Keys("ns")
    for new in STATUSES:
        assert SOURCES[new] == tuple(old for old in STATUSES if allowed(old, new) and old != new)
        assert keys.move_sets[new] == (keys.status(new), *map(keys.status, SOURCES[new]))
    assert SOURCES["RUNNING"] == ("DISPATCHED",)
    assert len(keys.move_sets["FINISHED:ABORTED"]) == 5


def _lua_units(text: str) -> list[str]:
    return [name for _, names in _scripts._units(text) for name in sorted(names)]


def test_scripts_get_only_the_helpers_they_use() -> None:
    """Includes are cut down to what a script calls, directly or through another helper (a
    helper is a closure made on every call), in their own order."""
    include = """--[[ header ]]
local A, B = 1, 2
local function f(x) return x + A end
-- about g
local function g(x)
  return f(x) * 2
end
local function h() return B end
local UNUSED = "f g h"
"""
    assert _lua_units(include) == ["A", "B", "f", "g", "h", "UNUSED"]
    units = _scripts._units(include)
    kept = _scripts._used(units, {"g", "print"})
    assert [sorted(names) for _, names in kept] == [["A", "B"], ["f"], ["g"]]
    assert "-- about g" in kept[1][0]  # a comment goes with the unit before it
    assert _scripts._used(units, {"nothing"}) == []
    claim, update = _scripts.source("claim-7.lua"), _scripts.source("update-8.lua")
    assert "local function server_ms" in claim and "local function move" not in claim
    assert "local function json_str" not in claim  # used by move only
    assert "local function move" in update and "local function job_status" not in update
    assert "local function json_str" in update  # through move


def test_the_library_holds_every_script_as_a_function() -> None:
    """One function per script file, named after the code's digest; the includes once, at the
    top, with the status rules filled in; each function sets KEYS and ARGV before its body."""
    name, code, names = _scripts.library()
    digest = name.removeprefix("redisjobs_")
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert code.startswith(f"#!lua name={name}\nlocal KEYS, ARGV\n")
    assert set(names) == {f.rsplit("-", 1)[0] for f in FILES}
    for script, function in names.items():
        assert function == f"rj_{digest}_{script}"
        assert (
            code.count(
                f"redis.register_function('{function}', function(keys, args)\nKEYS, ARGV = keys, args\n"
            )
            == 1
        )
    assert code.count("local function move(") == 1 and code.count("local function emit(") == 1
    assert "@@" not in code and "-- @include" not in code
    assert _scripts.library() is _scripts.library()  # built once


def test_the_library_name_follows_the_status_rules_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change of the transition table alone (no Lua changed) must give another library: a
    server holding the old one would otherwise keep running the old rules."""
    name = _scripts.library()[0]
    rules = _scripts._placeholders()
    _scripts.library.cache_clear()
    monkeypatch.setattr(_scripts, "_placeholders", lambda: {**rules, "@@TIMED@@": '"|FINISHED:COMPLETED|"'})
    try:
        assert _scripts.library()[0] != name
    finally:
        _scripts.library.cache_clear()


def test_the_library_is_the_same_whatever_order_the_files_are_listed_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its name is a digest of its code: two machines with the same redisjobs, whose file systems
    list the scripts in different orders, must agree on it."""
    header = "--[[\n  KEYS[1] x\n  ARGV[1] y\n  Output: 1\n]]\n"
    files = {
        "a-1.lua": header + '-- @include "duration"\n-- @include "common"\nreturn 1\n',
        "b-1.lua": header + '-- @include "common"\n-- @include "duration"\nreturn 2\n',
    }
    built = []
    for order in (files, dict(reversed(list(files.items())))):
        _scripts.library.cache_clear()
        monkeypatch.setattr(_scripts, "script_files", lambda order=order: order)
        built.append(_scripts.library())
    _scripts.library.cache_clear()
    assert built[0] == built[1]
    assert set(built[0][2]) == {"a", "b"}
