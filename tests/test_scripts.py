"""The Lua scripts: one file each, a header that documents them, and one source of status rules."""

from __future__ import annotations

import re

import pytest

from redisjobs import _scripts
from redisjobs._lifecycle import STATUSES, TRANSITIONS, allowed

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
    source = _scripts.source("update-18.lua")
    for old in STATUSES:
        for new in TRANSITIONS[old]:
            assert f"|{old}>{new}|" in source
    for i, status in enumerate(STATUSES, 1):
        assert f"|{status}={i}|" in source
    assert allowed("FINISHED:ABORTED", "FINISHED:ABORTED")
    assert not allowed("FINISHED:ABORTED", "RUNNING")
    assert not allowed("SUBMITTED", "RUNNING")


def test_status_set_keys_follow_the_status_order() -> None:
    """Scripts that receive all 11 status sets get them in STATUSES order."""
    for name, first in (("update-18.lua", 7), ("delete-20.lua", 9), ("settle-16.lua", 6)):
        header = _scripts.script_files()[name]
        for i, status in enumerate(STATUSES):
            assert re.search(
                rf"KEYS\[{first + i}\]\s+status:{re.escape(status)}\s*$", header, re.MULTILINE
            ), (
                name,
                status,
            )
