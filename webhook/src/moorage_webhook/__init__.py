"""The Moorage validating admission webhook."""
