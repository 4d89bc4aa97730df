"""The state table: its layout, and conditional writes, its one concurrency tool.

One DynamoDB table holds all the state the functions and the CLI share (template.yaml's
``StateTable``: partition key ``pk``, sort key ``sk``, string; DynamoDB removes an item once the
epoch seconds in its ``ttl`` attribute have passed). Each kind of item lives under its own
partition-key prefix; a fixed partition (no ``#``) is one partition holding one item per cluster,
read by key instead of scanning the table. Every key is built here, and nowhere else:

pk                                   sk              written by; read by                              ttl
-----------------------------------  --------------  -----------------------------------------------  ----------------
TOKEN#<sha256>                       TOKEN           CLI cluster; the webhook (token -> cluster)      none: revoked
CLUSTER#<name>                       CLUSTER         CLI cluster                                      none
POLLING                              <cluster>       CLI cluster add; the Events poller's fan-out     none
POLLER#<cluster>                     LEASE           Events poller: lease, fence, checkpoint          none
CHECKPOINT#<name>                    CHECKPOINT      CLI backfill --stack                             none
ALERT#<rule>#<cluster>#<identity>    <bucket start>  ingest paths: correlation counters (403 bursts)  a day
FINDING#<rule>#<cluster>#<who>#<obj> PAGE            ingest paths: a finding paged once per window    the window
SEEN                                 <cluster>       webhook, forwarder; the poller's fan-out         none
LOCK#<kind>#<day>#<hh>               LOCK            compactor: one lease per archive partition       a day past lease
COMPACTED#<kind>#<yyyy-mm-ddThh>     DONE            compactor: a landing hour compacted whole        lookback + a day
LEDGER#<yyyy-mm-ddThh>               <archive key>   compactor; the digest                            30 days
DIGEST#HEAD                          HEAD            digest; CLI verify --stack, doctor               none

Each function's role is granted only its prefixes, with IAM's ``dynamodb:LeadingKeys`` condition:
``leading_keys(prefix)`` is the pattern template.yaml grants (tests/infra/test_state_table.py
compares the two). ``CLUSTER#`` and ``CHECKPOINT#`` are reached only by the CLI, with the
operator's credentials (``OPERATOR_ONLY``).

A bottom-layer module: the standard library and botocore only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

T = TypeVar("T")
Key = dict[str, dict[str, str]]  # {"pk": {"S": ...}, "sk": {"S": ...}}, as the low-level client takes it

TOKEN = "TOKEN#"  # noqa: S105 - a key prefix, not a secret
CLUSTER = "CLUSTER#"
POLLING = "POLLING"
POLLER = "POLLER#"
CHECKPOINT = "CHECKPOINT#"
ALERT = "ALERT#"
SEEN = "SEEN"
LOCK = "LOCK#"
LEDGER = "LEDGER#"
FINDING = "FINDING#"
COMPACTED = "COMPACTED#"
DIGEST_HEAD = "DIGEST#HEAD"
# The attribute DynamoDB's time to live reads (template.yaml's TimeToLiveSpecification.AttributeName).
TTL = "ttl"
PREFIXES = (TOKEN, CLUSTER, POLLING, POLLER, CHECKPOINT, ALERT, SEEN, LOCK, LEDGER, DIGEST_HEAD, FINDING, COMPACTED)
OPERATOR_ONLY = frozenset({CLUSTER, CHECKPOINT})  # no function's role is granted these

# The sort keys that registry scans filter on (a token's item, a cluster's item).
TOKEN_SORT = "TOKEN"  # noqa: S105 - a sort key, not a secret
CLUSTER_SORT = "CLUSTER"
FINDING_SORT = "PAGE"
FINDING_KEY_BYTES = 2048  # DynamoDB's limit on a partition key
UNKNOWN = "(unknown)"  # a group-by value the event does not have


def leading_keys(prefix: str) -> str:
    """The ``dynamodb:LeadingKeys`` pattern that grants ``prefix``: ``TOKEN#*`` for a prefix
    followed by a name (StringLike), the partition itself for a fixed one (``SEEN``)."""
    return f"{prefix}*" if prefix.endswith("#") else prefix


def item_key(pk: str, sk: str) -> Key:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def token_key(token_sha256: str) -> Key:
    return item_key(TOKEN + token_sha256, TOKEN_SORT)


def token_hash_from(pk: str) -> str:
    """The token hash a ``TOKEN#`` item's partition key holds."""
    return pk.removeprefix(TOKEN)


def cluster_key(name: str) -> Key:
    return item_key(CLUSTER + name, CLUSTER_SORT)


def polling_key(cluster: str) -> Key:
    return item_key(POLLING, cluster)


def poller_key(cluster: str) -> Key:
    return item_key(POLLER + cluster, "LEASE")


def checkpoint_key(name: str) -> Key:
    return item_key(CHECKPOINT + name, "CHECKPOINT")


def escape(part: str) -> str:
    """A key part that cannot be confused with the separators: ``%`` ``#`` ``|`` percent-encoded
    (``forbidden``, a cluster name, an ordinary user name are unchanged)."""
    return part.replace("%", "%25").replace("#", "%23").replace("|", "%7C")


def alert_stream(rule: str, cluster: str, identity: str) -> str:
    """The name of one correlation stream's counters: ``<rule>#<cluster>#<identity>``. The rule
    (a correlation's name) is escaped and a cluster name holds no ``#``, so the identity may
    (``correlation_identity``)."""
    return f"{escape(rule)}#{cluster}#{identity}"


def correlation_identity(values: Sequence[str | None]) -> str:
    """The identity part of a correlation stream from its group-by values: one value as it is
    (``ALERT#forbidden#<cluster>#<user name>``, the key the 403 counters always had), several each
    escaped and joined by ``|``; a missing value reads ``(unknown)``."""
    present = [value or UNKNOWN for value in values]
    if len(present) == 1:
        return present[0]
    return "|".join(escape(value) for value in present)


def alert_partition(stream: str) -> str:
    """``stream``: ``alert_stream(...)``, the 403 counters of one identity."""
    return ALERT + stream


def alert_key(stream: str, bucket: str) -> Key:
    return item_key(alert_partition(stream), bucket)


def finding_partition(rule: str, cluster: str, identity: str, subject: str) -> str:
    """One finding's page claim: ``FINDING#<rule>#<cluster>#<identity>#<object>``, rule, identity
    and object escaped. A partition key is at most 2048 bytes: a longer one keeps its first 1000
    characters and ends with the SHA-256 of the whole, so it stays one key per finding."""
    pk = f"{FINDING}{escape(rule)}#{cluster}#{escape(identity)}#{escape(subject)}"
    if len(pk.encode()) <= FINDING_KEY_BYTES:
        return pk
    return f"{pk[:1000]}~{hashlib.sha256(pk.encode()).hexdigest()}"


def finding_key(rule: str, cluster: str, identity: str, subject: str) -> Key:
    return item_key(finding_partition(rule, cluster, identity, subject), FINDING_SORT)


def seen_key(cluster: str) -> Key:
    return item_key(SEEN, cluster)


def lock_name(kind: str, day: str, hour: str) -> str:
    """The name of one archive partition's lock: ``<kind>#<yyyy-mm-dd>#<hh>`` (locally, the lock
    file's name under the lake's ``.locks/``). A partition holds every cluster's rows of the hour."""
    return f"{kind}#{day}#{hour}"


def compacted_key(kind: str, hour: str) -> Key:
    """A landing hour of one kind, compacted whole; ``hour``: ``yyyy-mm-ddThh``."""
    return item_key(f"{COMPACTED}{kind}#{hour}", "DONE")


def lock_key(name: str) -> Key:
    """``name``: ``lock_name(...)``."""
    return item_key(LOCK + name, "LOCK")


def ledger_partition(hour: str) -> str:
    """``hour``: ``yyyy-mm-ddThh``, when the ledger's files were written."""
    return LEDGER + hour


def ledger_key(hour: str, archive_key: str) -> Key:
    return item_key(ledger_partition(hour), archive_key)


def digest_head_key() -> Key:
    return item_key(DIGEST_HEAD, "HEAD")


def conditional_write(write: Callable[[], T], error: type[Exception], what: str) -> T | None:
    """``write()``'s answer; None when its condition refused it. Any other failure raises ``error``
    naming ``what`` was being done."""
    try:
        return write()
    except ClientError as exc:
        if _refused(exc.response):
            return None
        raise error(f"cannot {what}: {exc}") from exc
    except BotoCoreError as exc:
        raise error(f"cannot {what}: {exc}") from exc


def _refused(response: Any) -> bool:
    """A condition said no: of a single write, or of any item of a transaction (TransactWriteItems
    cancels the whole transaction and says why per item)."""
    code = response["Error"]["Code"]
    if code == "TransactionCanceledException":
        return any(reason.get("Code") == "ConditionalCheckFailed" for reason in response.get("CancellationReasons", ()))
    return bool(code == "ConditionalCheckFailedException")
