"""Running mixscale on a Ray cluster: job submission (``submit``) and the KubeRay manifests'
generated parts (``k8s``). Ray's own machinery does the work; this package configures it."""
