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


def test_only_wheel_tags_cover_a_target_whatever_else_upstream_holds() -> None:
    built = "demo-1.0-2-cp311-cp311-linux_armv7l.whl"  # with a build tag
    for others, covering in [
        (("demo-1.0-py2.py3-none-any.egg", "demo-1.0.win32.exe", "demo-1.0-py3.whl"), None),
        (("demo-1.0-cp311-cp311-win_amd64.whl", built), built),
        (("demo-1.0-cp310.cp311-abi3-linux_armv7l.whl",), "demo-1.0-cp310.cp311-abi3-linux_armv7l.whl"),
    ]:
        decision = decide(replace(PLAIN, upstream_wheels=others), TARGET)
        expected = Outcome.build if covering is None else Outcome.covered
        assert (decision.outcome, decision.reason) == (expected, covering and f"upstream has {covering}")


def test_a_build_waits_for_the_sdists_details_but_no_rule_does() -> None:
    waiting = replace(PLAIN, details_known=False)
    assert (decide(waiting, TARGET).outcome, decide(waiting, TARGET).reason) == (
        Outcome.wait,
        "awaiting upstream file details",
    )
    assert decide(replace(waiting, sdists=()), TARGET).outcome is Outcome.skip
    assert decide(replace(waiting, upstream_wheels=("demo-1.0-py3-none-any.whl",)), TARGET).outcome is (
        Outcome.covered
    )
