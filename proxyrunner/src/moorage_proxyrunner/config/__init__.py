"""The proxy's settings and resource limits."""
