"""Middleware policy: authentication, JWKS, authorisation, tool filter, audit, live reload."""
