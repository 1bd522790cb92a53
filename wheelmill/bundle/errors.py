"""Why a bundle cannot be made: one class per kind of bad input, each naming the culprit.

Each also derives from the domain error whose HTTP status fits it, so the master's one exception
handler answers them (422 for input the farm cannot use, 404 for an unknown bundle) unchanged.
"""

from wheelmill.errors import InvalidName, InvalidTarget, NotFound, WheelmillError


class BundleError(WheelmillError):
    """The bundle cannot be made."""


class InvalidRequirements(BundleError, InvalidName):
    """A requirement line is not one the farm can bundle."""


class InvalidInstalled(BundleError, InvalidName):
    """The list of packages installed on the target cannot be read."""


class Unresolvable(BundleError, InvalidName):
    """The requirements have no solution for the target."""


class UnknownTarget(BundleError, InvalidTarget):
    """The farm has no builder for this target."""


class UnknownBundle(BundleError, NotFound):
    """No bundle has this id."""
