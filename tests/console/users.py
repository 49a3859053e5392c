"""Running a bit of Python as another user: fork, drop to that user with os.setuid, report back."""

from __future__ import annotations

import os
from typing import Callable

NOBODY = 65534
NOGROUP = 65534


def as_user(uid: int, gid: int, action: Callable[[], str], extra_groups: tuple[int, ...] = ()) -> str:
    """Run ``action`` in a forked child that dropped to ``uid``/``gid``; return what it returned
    (or the exception it raised, as "ExceptionName: message")."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only sockets and os calls from here, then _exit
        result = "child did not report"
        try:
            os.close(read_end)
            os.setgroups(list(extra_groups))
            os.setgid(gid)
            os.setuid(uid)
            if os.getuid() != uid or os.geteuid() != uid:
                raise RuntimeError("could not drop privileges")
            result = action()
        except BaseException as exc:  # reported to the parent, which asserts on it
            result = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, result.encode()[:65536])
            os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as fh:
        chunks.append(fh.read())
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")
