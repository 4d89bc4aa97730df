"""``auditlake report``: one self-contained HTML page over a lake's time window, for a security engineer.

Contract:

- ``queries``: the report's own aggregate queries (``report/sql/*.sql``), in the named queries' file
  format (``-- params:``, ``-- placeholders:``), bound and run by the same engines as ``auditlake query``
  (query.named: DuckDB locally, Athena deployed). With the named queries ``identity_timeline``,
  ``object_history``, ``forbidden_bursts`` and ``coverage_gaps`` they are the page's only data: the
  report draws what the CLI answers, never a second reading of the lake.
- ``data.gather``: runs them over one window and returns a ``ReportData`` (plain values, both engines'
  answers in one shape).
- ``page.render``: the HTML. Every string from the lake is escaped (HTML text, JSON inside ``<script>``,
  and Plotly's own pseudo-HTML labels); the page loads nothing (a Content-Security-Policy forbids any
  fetch) and inlines its charting library (Plotly), so it opens offline.
- ``grafana``: the same queries as a Grafana dashboard over the Athena data source (``infra/grafana/``).
"""
