"""Build roots: a Debian userland of another architecture (armhf) that builds run in, under qemu-user.

``wheelmill builder-root create`` makes or updates one (debootstrap.py) after making sure the kernel
hands that architecture's programs to qemu (binfmt.py); ``wheelmill builder --root DIR`` builds in it.
"""

from wheelmill.errors import WheelmillError


class RootError(WheelmillError):
    """The build root cannot be made, updated or used."""
