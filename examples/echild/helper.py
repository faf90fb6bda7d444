"""A module that looks harmless: app.py imports it only to print where it lives.

Its module-level code makes the process ignore SIGCHLD, as some libraries do to "avoid
zombies". From then on the kernel reaps every child by itself, and no one can learn a child's
exit status any more: waitpid() fails with ECHILD, and subprocess takes that to mean success.
"""

import signal

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the culprit: sigaudit points here
