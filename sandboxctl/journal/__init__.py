"""The project's journal: what was done, and where the work departs from PLAN.md.

- :mod:`~sandboxctl.journal.notes`: implementation notes, appended to
  ``docs/IMPLEMENTATION_NOTES.md`` with a UTC timestamp and author (`invoke notes.add`).
- :mod:`~sandboxctl.journal.issuelog`: the deviation log, ``docs/ISSUE_LOG.md``
  (`invoke issue.log`, `invoke issue.resolve`), whose open entries the plan check reports.
"""
