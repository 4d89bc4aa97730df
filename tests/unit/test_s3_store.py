"""The S3 adapter's reading of S3's answers (botocore Stubber: no sockets).

S3's rule: HeadObject/GetObject on a missing key answers 404 when the caller has s3:ListBucket on
the bucket, and 403 when it does not. Every auditlake role that asks whether a key exists has
s3:ListBucket, so a 404 means "no such object" and a 403 is an error naming the fix, never "missing".
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from auditlake.stores import Archived, StoreError
from auditlake.stores.s3 import S3Store
from auditlake.timestamps import format_utc
from auditlake.trust.digest import Digester, LocalChainHead, LocalSigner
from auditlake.trust.ledger import Entry, LocalLedger

BUCKET, KEY = "archive", "audit/dt=2026-11-20/hour=09/prod-1.parquet"
WRITTEN = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
RESTORED = 'ongoing-request="false", expiry-date="Fri, 21 Dec 2026 00:00:00 GMT"'  # a restore that finished


@pytest.fixture
def stubbed() -> Iterator[tuple[S3Store, Stubber]]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield S3Store(client, BUCKET), stubber
        stubber.assert_no_pending_responses()


def head(stubber: Stubber, **answer: object) -> None:
    stubber.add_response("head_object", {"ContentLength": 7, "LastModified": WRITTEN, **answer},
                         {"Bucket": BUCKET, "Key": KEY})  # fmt: skip


def refuse(stubber: Stubber, operation: str, status: int, code: str) -> None:
    # A HEAD error has no body: botocore names the error by its status ("404", "403").
    stubber.add_client_error(operation, service_error_code=code, http_status_code=status,
                             expected_params={"Bucket": BUCKET, "Key": KEY})  # fmt: skip


def test_404_is_no_such_object(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    refuse(stubber, "head_object", 404, "404")
    refuse(stubber, "head_object", 404, "404")
    assert store.size(KEY) is None
    assert store.modified(KEY) is None


@pytest.mark.parametrize("operation", ["size", "modified"])
def test_403_is_an_error_naming_the_fix_never_missing(stubbed: tuple[S3Store, Stubber], operation: str) -> None:
    store, stubber = stubbed
    refuse(stubber, "head_object", 403, "403")
    with pytest.raises(StoreError) as raised:
        getattr(store, operation)(KEY)
    assert str(raised.value).startswith(
        f"HeadObject on {BUCKET}/{KEY} answered 403: the role needs s3:ListBucket on the bucket "
        "to tell a missing key (404) from a forbidden one"
    )


def test_403_on_get_object_names_the_fix(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    refuse(stubber, "get_object", 403, "AccessDenied")
    with pytest.raises(StoreError, match=r"^GetObject on archive/.* answered 403: the role needs s3:ListBucket"):
        store.get(KEY)


def test_a_present_object_has_its_size_and_write_time(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    head(stubber)
    head(stubber)
    assert store.size(KEY) == 7
    assert store.modified(KEY) == WRITTEN


def test_deep_archive_is_archived_before_any_range_is_read(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    head(stubber, StorageClass="DEEP_ARCHIVE")  # and no GetObject queued: none may be made
    with pytest.raises(Archived, match="DEEP_ARCHIVE: restore it"):
        store.open(KEY)


def test_get_object_refused_for_its_storage_class_is_archived(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    refuse(stubber, "get_object", 403, "InvalidObjectState")
    with pytest.raises(Archived):
        store.get(KEY)


@pytest.mark.parametrize(
    "answer",
    [{"StorageClass": "GLACIER_IR"}, {"StorageClass": "STANDARD_IA"},
     {"StorageClass": "DEEP_ARCHIVE", "Restore": RESTORED}],
)  # fmt: skip
def test_readable_tiers_and_restored_objects_are_read(stubbed: tuple[S3Store, Stubber], answer: dict[str, str]) -> None:
    store, stubber = stubbed
    head(stubber, **answer)
    stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(b"PAR1..."), 7)},
                         {"Bucket": BUCKET, "Key": KEY, "Range": "bytes=0-6"})  # fmt: skip
    assert store.open(KEY).read() == b"PAR1..."


def test_the_digest_fails_loudly_on_a_403_and_seals_nothing(stubbed: tuple[S3Store, Stubber], tmp_path: Path) -> None:
    """A ledger entry whose HeadObject answers 403 stops the run (the function errors, and its
    errors alarm): it is neither sealed as written nor reported as never written."""
    store, stubber = stubbed
    ledger = LocalLedger(tmp_path / "ledger")
    ledger.record(Entry(KEY, "0" * 64, 7, 1, format_utc(WRITTEN), format_utc(WRITTEN), format_utc(WRITTEN)))
    chain = LocalChainHead(tmp_path / "head.json")
    digester = Digester(ledger, {"audit": store, "events": store}, chain, LocalSigner(tmp_path / "key.pem"))
    refuse(stubber, "head_object", 403, "403")
    with pytest.raises(StoreError, match="answered 403: the role needs s3:ListBucket"):
        digester.seal(WRITTEN + timedelta(hours=1), start=WRITTEN - timedelta(minutes=30), hourly=False)
    assert chain.load() is None  # no digest written (no put_object was stubbed), the head unmoved
