"""Diagnostics: checks that an approximate posterior or emulator is right.

``c2st`` (classifier two-sample test) is here; mmd, sbc, coverage/tarp follow.
"""

from physgen.diagnostics.c2st import c2st

__all__ = ["c2st"]
