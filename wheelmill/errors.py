"""Domain errors: one class per kind of failure, under one root.

Each class's docstring is its default message. Services raise these; the master's
exception handler maps them to HTTP answers, the CLI prints them.
"""


class WheelmillError(Exception):
    """wheelmill failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(WheelmillError):
    """The configuration is not valid."""


class InvalidName(WheelmillError):
    """A package name or version is not valid."""


class InvalidTarget(WheelmillError):
    """A target is not of the form PYTHON-ABI-PLATFORM."""


class NotFound(WheelmillError):
    """No such object."""


class AuthError(WheelmillError):
    """The token is missing, unknown or revoked."""


class Forbidden(WheelmillError):
    """The token does not allow this."""


class LeaseLost(WheelmillError):
    """The lease expired or was replaced: drop this build."""


class UploadRefused(WheelmillError):
    """The upload was refused."""

    def __init__(self, message: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class UpstreamError(WheelmillError):
    """The upstream index answered something we cannot use."""


class SandboxUnavailable(WheelmillError):
    """The sandbox the configuration requires is not available."""
