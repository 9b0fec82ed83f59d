"""The public surface: everything in __all__ exists, and the exception tree is as documented."""

from __future__ import annotations

import redisjobs


def test_all_names_exist_and_are_public() -> None:
    for name in redisjobs.__all__:
        assert hasattr(redisjobs, name), name
    # (pytest's assertion rewriting adds "@py_builtins" and such to modules it rewrites)
    public = {n for n in dir(redisjobs) if not n.startswith(("_", "@"))}
    modules = {"manager", "server", "testing", "nvflare", "cli", "kit", "migrate", "acl"}
    assert public - set(redisjobs.__all__) <= modules, public - set(redisjobs.__all__)


def test_exceptions_share_one_root_and_subclass_builtins() -> None:
    root = redisjobs.RedisJobsError
    for name in redisjobs.__all__:
        obj = getattr(redisjobs, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, root), name
    assert issubclass(redisjobs.JobNotFound, LookupError)
    assert issubclass(redisjobs.InvalidJobId, ValueError)
    assert issubclass(redisjobs.InvalidTransition, ValueError)
    assert issubclass(redisjobs.BlobNotFound, LookupError)
    assert "abc" in str(redisjobs.JobNotFound("abc"))


def test_enums_carry_nvflare_values() -> None:
    assert redisjobs.RunStatus.FINISHED_CANT_SCHEDULE == "FINISHED:CAN_NOT_SCHEDULE"
    assert redisjobs.RunStatus.ABANDONED.value == "FINISHED:ABANDONED"
    assert redisjobs.JobMetaKey.JOB_FOLDER_NAME == "job_folder_name"
    assert len(redisjobs.RunStatus) == 11
