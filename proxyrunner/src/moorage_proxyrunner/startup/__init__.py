"""Start-up: the cluster and local modes."""
