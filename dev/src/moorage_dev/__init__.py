"""Developer tooling: the local control plane and the demo."""
