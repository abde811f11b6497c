"""``mixscale k8s render-serve``: generate the RayService's serveConfigV2 from serve/config.yaml."""

from __future__ import annotations

import sys

ORDER = 95


def register(subparsers) -> None:
    p = subparsers.add_parser("k8s", help="generate the parts of the KubeRay manifests that come from other files",
                              description="Kubernetes manifests (k8s/): generate what is not written by hand.")
    sub = p.add_subparsers(dest="k8s_command", metavar="{render-serve}")
    sub.required = True
    r = sub.add_parser("render-serve", help="the RayService's serveConfigV2, generated from serve/config.yaml",
                       description="Render serve/config.yaml as the RayService's serveConfigV2 (Serve on all "
                       "interfaces of every Pod, port 8000; everything else as it is). Prints it, or writes it "
                       "into the RayService manifest with --write, or checks the manifest with --check.")
    r.add_argument("--config", help="the Serve config (default: serve/config.yaml of this checkout)")
    r.add_argument("--manifest", help="the RayService manifest (default: k8s/base/rayservice.yaml)")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write serveConfigV2 into the manifest")
    mode.add_argument("--check", action="store_true", help="exit 1 if the manifest's serveConfigV2 is stale")
    r.set_defaults(func=run_render)


def run_render(args) -> int:
    from mixscale.cluster import k8s

    config = args.config or k8s.SERVE_CONFIG
    manifest = args.manifest or k8s.RAYSERVICE
    if args.write:
        changed = k8s.write_rayservice(config, manifest)
        print(f"{manifest}: serveConfigV2 {'updated' if changed else 'already current'}", file=sys.stderr)
        return 0
    rendered = k8s.render_serve_config(config)
    if args.check:
        if k8s.manifest_serve_config(manifest) != rendered:
            print(f"{manifest}: serveConfigV2 differs from {config}; run `mixscale k8s render-serve --write`",
                  file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(rendered)
    return 0
