"""The ``auditlake`` command line: the same core as the Lambda functions, on a local lake or AWS.

This module is the click group and the registration only; the commands live in one module per topic
(clusters, ingest, events, archive, query, findings, rules, policy, demo, doctor), with shared options in options.py,
printing in render.py and the stack's Output names in stack.py. No name here shadows a submodule.
"""

from __future__ import annotations

import click

from auditlake import __version__
from auditlake.cli import archive, clusters, demo, doctor, events, findings, ingest, policy, query, rules
from auditlake.cli.hunt import hunt as hunt_command


@click.group()
@click.version_option(__version__)
def main() -> None:
    """auditlake: Kubernetes audit events and Events into a queryable, tamper-evident lake."""


for command in (
    clusters.cluster,
    ingest.serve,
    ingest.ingest,
    ingest.backfill,
    demo.replay,
    demo.synth,
    demo.demo,
    policy.policy,
    events.poll,
    archive.compact,
    archive.digest,
    archive.verify,
    query.query,
    query.summary,
    findings.findings,
    rules.rules,
    hunt_command,
    doctor.doctor,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
