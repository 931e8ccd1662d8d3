"""InfraScope's test kit (development only, installed by ``make venv``).

A pytest plugin (:mod:`infrascope_testkit.plugin`, registered through the ``pytest11``
entry point, so every suite of the repository gets it) whose fixtures start the real
programs through the runners of :mod:`infrascope_core` — free loopback ports, bounded
readiness waits, errors with the tail of the program's log, stop by pid — and skip the
test when the Debian package is missing (``make apt-deps`` installs them).
"""
