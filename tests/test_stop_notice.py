"""The notice a first signal prints in a graceful section: "(Ctrl-C again stops at once)" only after
a SIGINT; after a SIGTERM (a scheduler's, or `kill`) there was no Ctrl-C to repeat."""

from __future__ import annotations

import signal

from arc_trm.stopping import StopRequest


def notice_after(signum: int, capfd) -> str:
    stop = StopRequest()
    with stop.polled():
        stop.handle(signum)  # as the installed handler is called
    assert stop.signum == signum
    return capfd.readouterr().err.strip()


def test_only_a_sigint_notice_says_ctrl_c_again_stops_at_once(capfd):
    assert notice_after(signal.SIGINT, capfd) == ("SIGINT: stopping after the current step with a checkpoint "
                                                  "(Ctrl-C again stops at once)")
    assert notice_after(signal.SIGTERM, capfd) == "SIGTERM: stopping after the current step with a checkpoint"
