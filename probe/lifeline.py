"""Tie a helper process's life to the process that started it.

An embedded Core is a child of ``probe run``; if the probe is killed with SIGKILL it
cannot stop its children, so the child asks the kernel (``PR_SET_PDEATHSIG``) for a
SIGTERM when its parent dies and stops gracefully on it, instead of living on as an orphan.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Have ``sig`` delivered to this process when ``parent_pid`` (our parent) exits.

    Returns False where prctl is unavailable. If the parent is already gone (it died
    before we got here, so no signal will come) the signal is sent right away.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True
