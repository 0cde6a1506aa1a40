"""Serving an exported variant over HTTP: load and check the artifact, batch requests dynamically,
expose Prometheus metrics. ``infersearch serve`` starts it (``infersearch.serve.cli``)."""
