"""A test hook: kill imgclone hard at a named step, to prove that a killed run can be resumed or cleaned up.

Not a user feature. With IMGCLONE_FAULT=<phase>:<step> in the environment, the process sends itself SIGKILL
when it reaches that point: no `finally`, no atexit, no appliance shutdown, as after a power cut or the OOM
killer. The points are the start of every step of the step loops (`1:partition`, `2:install_packages`,
`3:install_grub`: the step function's name), the end of every stream a capture writes (`capture:stream`,
i.e. between two streams, or between the last stream and the final manifest) and the end of every stream Phase 1
extracts, its filesystem still mounted (`1:stream`). tests/test_faults.py uses it.
"""

from __future__ import annotations

import os
import signal

ENV = "IMGCLONE_FAULT"


def maybe_fail(phase: str, step: str) -> None:
    """Test hook: SIGKILL this process when $IMGCLONE_FAULT is "<phase>:<step>"; otherwise nothing."""
    if os.environ.get(ENV) == f"{phase}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
