"""What the webhook decides about an object: pure validation, one function per kind.

Pure: no I/O, no asyncio, aiohttp, Kubernetes client or metrics (an import-linter contract
enforces it). `validate_<kind>(new, *, old) -> Verdict` takes the raw object of an admission
request (and the stored object on an update) and returns errors, which reject it, and warnings,
which the client shows. The HTTP layer (`moorage_webhook.admission`) maps kinds to these
functions.
"""

from moorage_webhook.validation.mcpexternalauthconfigs import validate_mcpexternalauthconfig
from moorage_webhook.validation.mcpgroups import validate_mcpgroup
from moorage_webhook.validation.mcpregistries import validate_mcpregistry
from moorage_webhook.validation.mcpremoteproxies import validate_mcpremoteproxy
from moorage_webhook.validation.mcpservers import validate_mcpserver
from moorage_webhook.validation.mcptoolconfigs import validate_mcptoolconfig
from moorage_webhook.validation.verdict import Problem, Verdict
from moorage_webhook.validation.virtualmcpservers import validate_virtualmcpserver

__all__ = [
    "Problem",
    "Verdict",
    "validate_mcpexternalauthconfig",
    "validate_mcpgroup",
    "validate_mcpregistry",
    "validate_mcpremoteproxy",
    "validate_mcpserver",
    "validate_mcptoolconfig",
    "validate_virtualmcpserver",
]
