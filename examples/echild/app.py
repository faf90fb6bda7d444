"""The bug sigaudit was written for: a failing command that subprocess reports as a success.

Run it bare, then with sigaudit:

    python3 examples/echild/app.py
    LD_PRELOAD=target/debug/libsigaudit.so python3 examples/echild/app.py
    SIGAUDIT_MODE=veto LD_PRELOAD=target/debug/libsigaudit.so python3 examples/echild/app.py

Bare, `check_call(["false"])` returns 0: importing `helper` made the process ignore SIGCHLD,
so the exit status of `false` is lost. With sigaudit, an `ignore` event names helper.py's line
and the import that ran it, and an `echild` event links the lost status back to it. In veto
mode the ignore is refused and `check_call` raises as it should.

Exit status: 0 when the failure is seen, 1 when it was lost.
"""

import subprocess
import sys

import helper  # imported only to print its file name below

print(f"imported helper from {helper.__file__}", flush=True)

try:
    status = subprocess.check_call(["false"])
except subprocess.CalledProcessError as e:
    print(
        f"check_call(['false']) raised CalledProcessError (exit status {e.returncode}),"
        " as it should",
        flush=True,
    )
    sys.exit(0)

print(f"check_call(['false']) returned {status}: the failure was lost", flush=True)
sys.exit(1)
