"""A sealed file altered, its digest edited to match, the lake's key replaced and the whole chain
re-signed and re-linked with it (head too): the lake verifies against itself; the public key
exported beforehand does not."""

import base64
import hashlib
import json
from pathlib import Path

from auditlake.local_lake import LocalLake
from auditlake.trust.digest import canonical, message_digest
from tests.attacks.tampering import digests, flip_a_byte, reset_head_to, sealed_by

ISSUE = "11.12"
FINDING = "BAD-SIGNATURE"
AUDITOR = True


def tamper(lake: Path) -> None:
    newest = digests(lake)[-1]
    victim = sealed_by(newest)[0]
    flip_a_byte(victim)
    LocalLake(lake).digest_key_file.unlink()
    forger = LocalLake(lake).signer()
    previous = None
    for path in digests(lake):
        doc = json.loads(path.read_text())
        for obj in doc["objects"]:
            if lake / "archive" / obj["key"] == victim:
                obj["sha256"] = hashlib.sha256(victim.read_bytes()).hexdigest()
        doc["previous"] = previous
        doc["signature"] = {**doc["signature"], "key_id": forger.key_id}
        doc["signature"]["value"] = base64.b64encode(forger.sign(message_digest(doc))).decode()
        data = canonical(doc)
        path.write_bytes(data)
        previous = {"key": f"digests/{path.name}", "sha256": hashlib.sha256(data).hexdigest()}
    reset_head_to(lake, digests(lake)[-1])
