"""The verdict on one test's recorded calls, and the session's unused-permission report.

Contract:
- ``Checker.judge(records)`` evaluates each recorded call's needs (actions.py) against its run's role
  (roles.py) and returns one line per distinct denial: function, call, action, resource, condition
  keys, and why. A call without a mapping, or a statement whose condition names a key the mapping
  does not model (ForAllValues over an absent key would pass), is a failure line too.
- ``Checker.calls``/``Checker.seconds``: how many calls were judged, and the time it took.
- ``Checker.report()`` lists, per role, the statements and actions no recorded call used (those the
  Lambda service uses on the function's behalf are named apart) and the template resources the role
  names that no environment variable bound (placeholders). It is a report, not a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.iam.actions import SERVICE_ACTIONS, Call, Need, NoMapping, needs
from tests.iam.evaluator import Request, Statement, action_applies, evaluate, glob_match
from tests.iam.recorder import Run
from tests.iam.roles import Role, RoleBook


def _keys(need: Need) -> str:
    shown = {k: v for k, v in need.context.items() if not k.startswith("aws:")}
    return "" if not shown else " " + ", ".join(f"{k}={v!r}" for k, v in sorted(shown.items()))


@dataclass
class _Usage:
    statements: list[Statement]
    placeholders: set[str] | None = None  # unbound in every run of the role (None: no run yet)
    used: set[tuple[str, str]] = field(default_factory=set)  # (statement source, action pattern)


@dataclass
class Checker:
    book_factory: Callable[[], RoleBook]
    _book: RoleBook | None = None
    _roles: dict[tuple[str, tuple[tuple[str, str], ...], str | None], Role] = field(default_factory=dict)
    usage: dict[str, _Usage] = field(default_factory=dict)  # role logical id -> what was used
    calls: int = 0  # judged so far
    seconds: float = 0.0  # spent judging, the template's transform included

    @property
    def book(self) -> RoleBook:
        if self._book is None:  # the SAM transform takes seconds: only when a function ran
            self._book = self.book_factory()
        return self._book

    def role(self, run: Run) -> Role:
        env = tuple(sorted((k, v) for k, v in run.env.items() if k.startswith("AUDITLAKE_")))
        key = (run.function, env, run.function_arn)
        if key not in self._roles:
            role = self.book.role(run.function, dict(env), run.function_arn)
            self._roles[key] = role
            usage = self.usage.setdefault(role.logical_id, _Usage(role.statements))
            # A resource one test leaves unnamed (a run without an alert topic) is not a template gap.
            usage.placeholders = (
                set(role.placeholders) if usage.placeholders is None else usage.placeholders & role.placeholders
            )
        return self._roles[key]

    def judge(self, records: Iterable[tuple[Run, Call]]) -> list[str]:
        started = time.perf_counter()
        try:
            return self._judge(records)
        finally:
            self.seconds += time.perf_counter() - started

    def _judge(self, records: Iterable[tuple[Run, Call]]) -> list[str]:
        failures: dict[tuple[str, ...], list[str]] = {}
        for run, call in records:
            self.calls += 1
            role = self.role(run)
            try:
                wanted = needs(call, role)
            except NoMapping as exc:
                failures.setdefault((run.function, call.name, "mapping"), []).append(f"{run.function}: {exc}")
                continue
            for need in wanted:
                for line in self._unmodelled(role, need):
                    failures.setdefault((run.function, line), []).append(f"{run.function}: {line}")
                decision = evaluate(role.statements, Request(need.action, need.resource, need.context))
                if decision.allowed:
                    used = self.usage[role.logical_id].used
                    for statement in decision.allowed_by:
                        used |= {
                            (statement.source, p)
                            for p in statement.actions
                            if glob_match(p, need.action, ignore_case=True)
                        }
                    continue
                why = f" ({need.why})" if need.why else ""
                line = (f"{run.function} [{role.logical_id}]: {call.name} needs {need.action} on {need.resource}"
                        f"{_keys(need)}{why}: {decision.reason}")  # fmt: skip
                failures.setdefault((run.function, call.name, need.action), []).append(line)
        out = []
        for lines in failures.values():
            more = f" (and {len(lines) - 1} more like it)" if len(lines) > 1 else ""
            out.append(lines[0] + more)
        return out

    @staticmethod
    def _unmodelled(role: Role, need: Need) -> list[str]:
        out = []
        for statement in role.statements:
            if not action_applies(statement, need.action):
                continue
            for _, key, _ in statement.conditions:
                if key not in need.modelled:
                    out.append(f"{statement.label} conditions {need.action} on {key}, which tests/iam/actions.py "
                               f"does not model for that action: add it there")  # fmt: skip
        return out

    def report(self) -> list[str]:
        lines = []
        for role_id, usage in sorted(self.usage.items()):
            for statement in usage.statements:
                unused = [p for p in statement.actions if (statement.source, p) not in usage.used]
                if not unused:
                    continue
                by_service = [p for p in unused if p in SERVICE_ACTIONS]
                by_code = [p for p in unused if p not in SERVICE_ACTIONS]
                if by_code:
                    lines.append(f"{role_id} {statement.sid or statement.source}: {', '.join(by_code)}")
                if by_service:
                    reasons = sorted({SERVICE_ACTIONS[p] for p in by_service})
                    lines.append(f"{role_id} {statement.sid or statement.source}: {', '.join(by_service)} "
                                 f"(used by Lambda, not the code: {'; '.join(reasons)})")  # fmt: skip
            if usage.placeholders:
                lines.append(f"{role_id}: no environment variable names {', '.join(sorted(usage.placeholders))} "
                             f"(placeholders: only wildcards can match them)")  # fmt: skip
        if self._book is not None:
            unexercised = sorted(set(self.book.role_ids().values()) - set(self.usage))
            if unexercised:
                lines.append(f"roles no test ran a function of: {', '.join(unexercised)}")
        return lines
