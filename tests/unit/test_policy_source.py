"""A policy that changes at run time never stops ingestion."""

from __future__ import annotations

from auditlake.audit.policy_source import PolicySource
from auditlake.audit.redact import RedactionConfig

GOOD = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata}]\n"


def test_policy_changes_apply_and_bad_ones_keep_the_last_good() -> None:
    texts = [None, GOOD, GOOD, "rules: [", "", RuntimeError("SSM down")]

    def fetch() -> str | None:
        value = texts.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    source = PolicySource(fetch, RedactionConfig.build())
    assert source().policy is None  # no policy yet: keep everything
    first = source()
    assert first.policy is not None and len(first.policy.rules) == 1
    assert source() is first  # unchanged text is not recompiled
    assert source() is first  # invalid YAML: the last valid policy stays in force
    assert source().policy is None  # an emptied parameter removes the policy
    assert source().policy is None  # a failed read keeps what is in force
