"""A stand-in upstream index for tests and demos: a real HTTP server that answers like PyPI.

with StandInUpstream() as up:
    up.add_release("demo-pure", "1.0", kind="pure")
    ...  # point a follower at up.url, pip at up.simple_url
"""

from wheelmill.testing.faults import Fault
from wheelmill.testing.metadata import CoreMetadata
from wheelmill.testing.model import UpstreamConflict, UpstreamFile
from wheelmill.testing.sdists import FAILING_MESSAGE, SDIST_GENERATORS, SdistKind, make_sdist
from wheelmill.testing.upstream import StandInUpstream
from wheelmill.testing.wheels import make_wheel

__all__ = [
    "FAILING_MESSAGE",
    "SDIST_GENERATORS",
    "CoreMetadata",
    "Fault",
    "SdistKind",
    "StandInUpstream",
    "UpstreamConflict",
    "UpstreamFile",
    "make_sdist",
    "make_wheel",
]
