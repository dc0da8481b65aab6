"""Cedar policies that crash cedarpy's native parser (stack overflow, SIGSEGV) when nothing
bounds them: the two shapes of the reported denial of service, for tests that check each path
refuses them before Cedar sees them."""

from __future__ import annotations

from typing import Final

HEAD: Final = "permit(principal, action, resource) when { "

NESTED_PARENTHESES: Final = HEAD + "(" * 700 + "true" + ")" * 700 + " };"
"""About 2.5 KB once in an AdmissionReview; the parser overflows its stack at about 660 levels."""

LONG_AND_CHAIN: Final = HEAD + " && ".join(["true"] * 20_000) + " };"
"""20,000 terms: converting it to JSON (`policies_to_json_str`) overflows the stack."""

CRASHING_POLICIES: Final = {
    "nested-parentheses": NESTED_PARENTHESES,
    "long-and-chain": LONG_AND_CHAIN,
}
