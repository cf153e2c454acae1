"""Runs seen in a browser (the plan's "logs processor"): a run's trajectory as one
self-contained HTML page, an index of runs and an evaluation's page, and a read-only
server for them on 127.0.0.1.

Every model- or tool-written string reaches the page through Jinja's autoescaping after
:func:`~sandboxctl.runview.visible.visible` has made its control characters visible; the
pages carry a Content-Security-Policy that allows no script at all.
"""
