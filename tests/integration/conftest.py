"""Integration-tier wiring of the IAM check (logic in tests/iam/): every AWS call a Lambda function
makes in a test is judged against its role in the transformed template at the test's teardown, and
the permissions no call used are reported at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.iam.check import Checker
from tests.iam.recorder import RECORDER
from tests.iam.roles import RoleBook
from tests.iam.template import shipped

CHECKER = pytest.StashKey[Checker]()


@pytest.fixture(scope="session")
def iam_checker(request: pytest.FixtureRequest) -> Checker:
    RECORDER.install()
    checker = Checker(lambda: RoleBook(*shipped()))
    request.config.stash[CHECKER] = checker
    return checker


@pytest.fixture(autouse=True)
def iam_check(iam_checker: Checker) -> Iterator[None]:
    RECORDER.take()  # calls left by an earlier test's background threads are not this test's
    yield
    denials = iam_checker.judge(RECORDER.take())
    if denials:
        pytest.fail("IAM: calls the function's role does not allow (template.yaml):\n  " + "\n  ".join(denials),
                    pytrace=False)  # fmt: skip


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    checker = config.stash.get(CHECKER, None)
    if checker is None or not checker.usage:
        return
    terminalreporter.section("IAM: permissions no recorded call used (a report, not a failure)")
    for line in checker.report():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"IAM check: {checker.calls} calls judged in {checker.seconds:.2f} s")
