"""The planner's decision rules, in precedence order."""

from dataclasses import replace

from wheelmill.planning import Outcome, VersionFacts, decide
from wheelmill.targets import Target

TARGET = Target.parse("cp311-cp311-linux_armv7l")
PLAIN = VersionFacts(
    sdists=("demo-1.0.tar.gz",),
    upstream_wheels=(),
    requires_python=None,
    yanked=False,
    quarantined=False,
    package_skip=None,
    version_skip=None,
)


def test_a_plain_sdist_is_built() -> None:
    assert decide(PLAIN, TARGET).outcome is Outcome.build


def test_binary_only_is_skipped_until_an_sdist_arrives() -> None:
    decision = decide(
        replace(PLAIN, sdists=(), upstream_wheels=("demo-1.0-cp311-cp311-win_amd64.whl",)), TARGET
    )
    assert (decision.outcome, decision.reason) == (Outcome.skip, "binary-only: no sdist upstream")


def test_an_installable_upstream_wheel_covers_the_target() -> None:
    facts = replace(
        PLAIN, upstream_wheels=("demo-1.0-cp311-cp311-win_amd64.whl", "demo-1.0-py3-none-any.whl")
    )
    decision = decide(facts, TARGET)
    assert decision.outcome is Outcome.covered
    assert "demo-1.0-py3-none-any.whl" in (decision.reason or "")


def test_requires_python_can_exclude_the_target() -> None:
    decision = decide(replace(PLAIN, requires_python=">=3.12"), TARGET)
    assert decision.outcome is Outcome.skip
    assert "excludes Python 3.11" in (decision.reason or "")
    assert decide(replace(PLAIN, requires_python=">=3.11.4"), TARGET).outcome is Outcome.build
    assert decide(replace(PLAIN, requires_python="not a specifier"), TARGET).outcome is Outcome.build


def test_yanked_versions_are_skipped_only_when_configured() -> None:
    yanked = replace(PLAIN, yanked=True)
    assert decide(yanked, TARGET).outcome is Outcome.build
    assert decide(yanked, TARGET, skip_yanked=True).reason == "yanked when discovered"


def test_admin_skips_and_quarantine_win() -> None:
    assert (
        decide(replace(PLAIN, package_skip="too big"), TARGET).reason
        == "package skipped by an admin: too big"
    )
    assert (
        decide(replace(PLAIN, version_skip="broken"), TARGET).reason == "version skipped by an admin: broken"
    )
    assert decide(replace(PLAIN, quarantined=True, package_skip="x"), TARGET).reason == "quarantined upstream"
