"""A least-privilege Redis ACL user for one redisjobs namespace.

``acl_rules(namespace)`` gives the rule tokens of ``ACL SETUSER`` for a user that can run every
public method of ``RedisJobDefManager`` (and the ``redisjobs`` command line's ``stats``) in that
namespace and nothing else: its keys only (``rj:{<namespace>}:*`` and the blob chunks
``rj:{<namespace>/<jid>}:chunk:*``, glob characters of the namespace escaped), no pub/sub channel,
and only the commands redisjobs sends, listed in ``COMMANDS`` with where each is sent. Redis checks
the commands and keys of a script's ``redis.call`` too, so loading and running scripts
(``SCRIPT LOAD``, ``EVALSHA``) grants nothing beyond the list.

``acl_setuser_command(namespace, user, password)`` is the whole line for an operator, quoted for
``redis-cli``; ``python -m redisjobs.acl NAMESPACE USER`` prints it, with the password taken from
``$REDISJOBS_ACL_PASSWORD`` (or the placeholder ``>CHANGE-ME`` when that is unset). For example::

    $ export REDISJOBS_ACL_PASSWORD=s3cret
    $ python -m redisjobs.acl fl-prod rj-fl-prod
    ACL SETUSER rj-fl-prod reset on >s3cret resetchannels -@all +auth ... ~rj:{fl-prod/*}:chunk:*
    $ python -m redisjobs.acl fl-prod rj-fl-prod | redis-cli -h redis.internal --user admin
    OK

(the line is one line, meant for redis-cli's prompt or its standard input, not for a shell). The
servers then use ``redis://rj-fl-prod:s3cret@redis.internal:6379/0`` with ``namespace="fl-prod"``;
a manager of that user in another namespace gets ``redis.exceptions.NoPermissionError`` and writes
nothing. The line starts with ``reset``, so running it again replaces the user's rules and
passwords whole.

What the user cannot be kept from, because Redis ACLs cannot express it:

- ``SCAN`` (``gc`` and ``check_invariants`` need it) lists key names of the whole database, other
  namespaces' included; their values stay out of reach.
- A chunk key pattern also matches the chunks of namespaces named ``<namespace>/...``: where users
  must be kept apart, give no namespace a name that starts with another's name and a ``/``.

Not granted, and refused harmlessly: ``FUNCTION LOAD`` (and so ``FCALL``): function and library
names are shared by the whole server, so a user who may load functions can replace the ones other
users' managers call, with code that then runs with their rights; without it a manager runs the
same scripts by ``EVALSHA``, which names a script by its content (about 24k more server
instructions for a status change). ``CONFIG GET`` (it would also reveal ``requirepass`` and the
other secrets, and cannot be limited to one parameter): the manager's start-up check of
``maxmemory-policy`` is then skipped, so check that it is ``noeviction`` as an administrator;
``CLIENT SETINFO``, which redis-py sends on connecting and whose refusal it ignores (Redis 7.0
knows neither the command nor the rule ``+client|setinfo``; on 7.2 and later, add the rule to keep
``ACL LOG`` quiet). A refusal is one ``ACL LOG`` entry, counted, not repeated.

Not granted, and refused: ``FUNCTION LIST`` and ``FUNCTION DELETE``, which only
``gc(old_functions=True)`` (``redisjobs gc --old-functions``) sends, to delete the libraries of other
versions of redisjobs: for the same reason, that is for an administrator.

ACL users are not replicated: with replicas (``wait_replicas``, Sentinel), create the user on every
node that may become the master. The Sentinels have users of their own. A Redis Cluster client
sends more (``CLUSTER SHARDS``, ``COMMAND``, ...): these rules are not made, nor tested, for one.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._keys import Keys, glob_escape

#: Every command redisjobs sends, as ACL rule names, with where it is sent. Nothing else is allowed.
COMMANDS: dict[str, str] = {
    # redis-py, on every connection (a database other than 0 in the URL: SELECT) and when idle
    "hello": "redis-py's handshake (RESP3, with the credentials)",
    "auth": "redis-py's handshake (RESP2)",
    "select": "redis-py's handshake, when the URL names a database other than 0",
    "ping": "redis-py's health check of an idle connection; redisjobs demo",
    # scripts: loaded once per manager, then run by their sha1
    "script|load": "Scripts(): every script of redisjobs/lua, once per manager",
    "evalsha": "every single-job write (and getJobs on a cluster): redisjobs/lua (FCALL where the user "
    "may load functions, which these rules do not grant)",
    "wait": "durability: with wait_replicas, WAIT after each writing script",
    # inside the scripts (redis.call in redisjobs/lua/**/*.lua): Redis checks these too
    "del": "lua: delete, saveRecord",
    "get": "lua: request records (replayed)",
    "hdel": "lua: commitBlob, move (owners)",
    "hlen": "lua: saveRecord",
    "hset": "lua: create, update, approve, claim, commitBlob, saveRecord, markRecordDeleted, move",
    "hmget": "lua: update (a status and start time, approvals); gc (a finished job's times)",
    "incr": "lua: create (the submit sequence)",
    "sadd": "lua: create, saveRecord, move",
    "smove": "lua: claim, move",
    "srem": "lua: delete",
    "time": "lua: lease expiry by the server's clock (claim, renew, settle, dueLeases)",
    "xadd": "lua: every event",
    # both in scripts and from Python
    "exists": "lua: most scripts; clone, list_components, get_storage_*",
    "hget": "lua and Python: meta fields, manifests, owners, records",
    "hgetall": "lua: replies with the job; Python: get_job, listings' batches, records, manifests",
    "set": "lua: request records; Python: blob chunks",
    "zadd": "lua: indexes, queue, leases; Python: upload registrations",
    "zrange": "lua: claim; Python: queue, indexes (check_invariants, gc)",
    "zrangebyscore": "lua: dueLeases; Python: iter_job_ids, page_jobs, get_jobs_to_schedule, gc",
    "zrem": "lua: indexes; Python: upload registrations",
    "zscore": "lua: sequence numbers, leases; Python: lease_of, gc retention",
    # from Python only (redisjobs/*.py)
    "hexists": "get_jobs_waiting_for_review",
    "hkeys": "list_components, check_invariants",
    "hscan": "recover",
    "hvals": "redisjobs stats (blob bytes)",
    "mget": "blob reads, a few chunks at a time",
    "getrange": "blob reads: a blob of one chunk, in pieces hashed as they arrive",
    "scan": "gc's orphan sweep, check_invariants (MATCH the namespace's keys)",
    "scard": "redisjobs stats, demo",
    "smembers": "mark_submit_records_job_deleted",
    "sscan": "get_jobs_by_status, page_jobs, gc retention, check_invariants",
    "unlink": "blob chunks of replaced versions, deleted jobs, aborted uploads, gc",
    "xrange": "events",
    "xread": "watch (blocking)",
    "xrevrange": "watch (the newest event)",
    "xtrim": "gc's event retention (MINID)",
    "zcard": "redisjobs stats",
    "zmscore": "get_jobs_by_status",
    "info|memory": "redisjobs stats (used_memory; only INFO's memory section)",
}

_HEAD = ("reset", "on")
#: Redis refuses these in an ACL key pattern (C's isspace, and NUL).
_NOT_IN_PATTERNS = frozenset(" \t\n\v\f\r\0")
#: Shown instead of a password when none is given (``python -m redisjobs.acl``).
PLACEHOLDER_PASSWORD = "CHANGE-ME"
PASSWORD_ENV = "REDISJOBS_ACL_PASSWORD"


def key_patterns(namespace: str) -> list[str]:
    """The glob patterns (without the ACL's ``~``) of every key of ``namespace``: its metadata and
    indexes, and its blob chunks. Raises ``ValueError`` for an invalid namespace, and for one with a
    character that an ACL key pattern cannot hold (whitespace or NUL)."""
    keys = Keys(namespace)
    if any(c in _NOT_IN_PATTERNS for c in namespace):
        raise ValueError(
            f"namespace {namespace!r} holds whitespace or NUL, which ACL key patterns cannot: "
            "use another namespace for a user of its own"
        )
    ns = glob_escape(keys.namespace)
    return [f"rj:{{{ns}}}:*", f"rj:{{{ns}/*}}:chunk:*"]


def acl_rules(namespace: str) -> list[str]:
    """The ``ACL SETUSER`` rule tokens of a least-privilege user for one namespace (see the module's
    docstring): ``reset`` and ``on`` first, then no channels, no command but ``COMMANDS``, no key
    but ``namespace``'s. ``reset`` also drops the passwords: add one (``>password``) after these,
    as ``acl_setuser_command`` does. Raises ``ValueError`` for an invalid namespace."""
    return [*_HEAD, *_body(namespace)]


def _body(namespace: str) -> list[str]:
    patterns = key_patterns(namespace)
    return ["resetchannels", "-@all", *("+" + c for c in sorted(COMMANDS)), *("~" + p for p in patterns)]


def acl_setuser_command(namespace: str, user: str, password: str) -> str:
    """The ``ACL SETUSER`` line that creates (or resets) ``user`` with ``password`` and the rules of
    ``acl_rules(namespace)``, each token quoted for redis-cli where needed. Raises ``ValueError``
    for an invalid namespace, user name or password."""
    if not isinstance(user, str) or not user or any(c.isspace() or c == "\0" for c in user):
        raise ValueError(f"invalid ACL user name {user!r}: non-empty, without whitespace")
    if not isinstance(password, str) or not password:
        raise ValueError("the password must be a non-empty str")
    tokens = ["ACL", "SETUSER", user, *_HEAD, ">" + password, *_body(namespace)]
    return " ".join(_cli_quote(t) for t in tokens)


_PLAIN = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "'"}


def _cli_quote(token: str) -> str:
    """``token`` as redis-cli reads it back (its ``sdssplitargs``): as it is when it is plain
    printable ASCII, else in double quotes with backslash escapes (``\\xHH`` for other bytes)."""
    if token and all(c in _PLAIN for c in token):
        return token
    out = []
    for byte in token.encode("utf-8"):
        c = chr(byte)
        if c in '\\"':
            out.append("\\" + c)
        elif 0x20 <= byte < 0x7F:
            out.append(c)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m redisjobs.acl",
        description="Print the ACL SETUSER line of a least-privilege Redis user for one redisjobs "
        f"namespace. The password comes from ${PASSWORD_ENV}; without it the line carries the "
        f"placeholder >{PLACEHOLDER_PASSWORD}.",
    )
    parser.add_argument("namespace", help="the redisjobs namespace the user may use")
    parser.add_argument("user", help="the ACL user name")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV) or ""
    try:
        line = acl_setuser_command(args.namespace, args.user, password or PLACEHOLDER_PASSWORD)
    except ValueError as e:
        parser.error(str(e))
    if not password:
        print(
            f"note: ${PASSWORD_ENV} is not set: replace the placeholder >{PLACEHOLDER_PASSWORD}",
            file=sys.stderr,
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
