"""The HTTP front: the aiohttp app, responses and streams, the caller's identity, metrics."""
