"""What the operator, webhook and proxy runner share.

Kube client and errors, TLS and certificate reload, HTTPS metrics/health server, logging,
settings helpers.
"""
