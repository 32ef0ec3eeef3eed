"""The tenant identity is the API normalised by RFC 3986 (section 6.2.2, no DNS): every spelling of one API is one
tenant, with one ledger, one reference-data cache and one record of dropped files."""

from __future__ import annotations

import pytest

from pipeline.state import TenantIdentity, normalise_api

CANONICAL = "https://api.example.com/v1"

#: (spelling, what it normalises to): the table of the issue's closing note
SPELLINGS: list[tuple[str, str]] = [
    ("https://api.example.com/v1", CANONICAL),
    ("HTTPS://API.EXAMPLE.COM/v1", CANONICAL),  # scheme and host case
    ("https://Api.Example.com:443/v1", CANONICAL),  # default port
    ("https://api.example.com:/v1", CANONICAL),  # empty port
    ("https://api.example.com/v1/", CANONICAL),  # trailing slash
    ("https://api.example.com/./v1", CANONICAL),  # dot-segment
    ("https://api.example.com/v1/jobs/../", CANONICAL),  # dot-dot segment
    ("https://api.example.com/x/../../v1", CANONICAL),  # dot-dot above the root
    ("https://api.example.com//v1//", CANONICAL),  # empty path segments
    ("https://api.example.com/%76%31", CANONICAL),  # percent-encoded unreserved characters
    ("https://api.example.com./v1", CANONICAL),  # the host's trailing dot (a fully qualified name)
    ("https://%61pi.example.com/v1", CANONICAL),  # a percent-encoded host
    ("https://user:pw@api.example.com/v1", CANONICAL),  # user-info is no part of it (and refused by settings)
    ("https://api.example.com/v1?x=1#top", CANONICAL),  # nor query and fragment
    ("  https://api.example.com/v1  ", CANONICAL),  # spaces around the setting
    ("https://api.example.com/a%2fb", "https://api.example.com/a%2Fb"),  # a reserved one stays encoded, upper case
    ("https://api.example.com/a%2Fb", "https://api.example.com/a%2Fb"),
    ("https://BÜCHER.example/v1", "https://xn--bcher-kva.example/v1"),  # IDNA host
    ("https://xn--bcher-kva.example/v1", "https://xn--bcher-kva.example/v1"),
    ("http://127.0.0.1:80/v1", "http://127.0.0.1/v1"),
    ("http://127.0.0.1:8765/v1/", "http://127.0.0.1:8765/v1"),
    ("http://[::1]:8765/v1", "http://[::1]:8765/v1"),
    ("http://localhost:8765/v1", "http://localhost:8765/v1"),  # no DNS: localhost is not 127.0.0.1
    ("https://api.example.com:8443/v1", "https://api.example.com:8443/v1"),  # another port, another API
    ("https://api.example.com/V1", "https://api.example.com/V1"),  # the path's case matters
]


@pytest.mark.parametrize(("spelling", "normalised"), SPELLINGS)
def test_each_spelling_normalises_as_rfc_3986_says(spelling: str, normalised: str) -> None:
    assert normalise_api(spelling) == normalised


def test_every_spelling_of_one_api_is_one_tenant_with_one_folder() -> None:
    same = {s for s, n in SPELLINGS if n == CANONICAL}
    identities = {TenantIdentity.of(s, 1001) for s in same}
    assert len(same) >= 15 and len(identities) == 1
    assert len({i.slug for i in identities}) == 1
    assert TenantIdentity.of(CANONICAL, 1001) != TenantIdentity.of(CANONICAL, 1002)
