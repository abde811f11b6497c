"""The product layer on the endpoint.

* ``ab``: the sticky, weighted A/B split of model versions by client id.
* ``feedback``: the durable feedback store and request log (SQLite or PostgreSQL), and the
  dataset export.
* ``report``: preference and ratings by version with confidence intervals.
* ``routes``: ``POST /v1/feedback``, the web page (``web/``) and its helper routes.
* ``serve``: ``install(app, service)``, which puts all of it on the Serve ingress.
"""
