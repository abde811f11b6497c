"""The online endpoint on Ray Serve: ``build_app(args)`` (``mixscale.serve.app``) builds it
from ``serve/config.yaml``'s ``args`` (``mixscale.serve.config.ServeArgs``)."""
