"""NTLM and Kerberos inside HTTP: ``Authorization``/``WWW-Authenticate`` NTLM, Negotiate, Kerberos.

Registered with :func:`protocols.http.register_auth_parser` for the three schemes, one
:class:`HttpAuthentication` per HTTP flow receives every decoded token of that flow: bare
NTLMSSP goes to an :class:`~protocols.ntlm.NtlmTracker` (transport ``http``), SPNEGO and
GSS-API Kerberos through :func:`protocols.spnego.handle_blob` to the same tracker or to a
:class:`~protocols.kerberos.GssKerberos` (AP-REQ paired with AP-REP or KRB-ERROR). So the
``ntlm`` and ``kerberos`` events come out of HTTP as they come out of SMB.

The NTLM verdict is the HTTP status of the response that follows the AUTHENTICATE
message, as SMB's is the session setup status: 401/407 is a failure, any other final
status a success (``status`` "HTTP <code>"). Zeek's HTTP analyzer hands no tokens to its
NTLM analyzer; Arkime's does, and so does this one.
"""

from __future__ import annotations

from protocols import spnego
from protocols.analyzer import FlowContext
from protocols.http import register_auth_parser
from protocols.kerberos import GssKerberos
from protocols.ntlm import NtlmTracker

#: the statuses that refuse the credentials (the server or the proxy asks again)
REFUSED = frozenset((401, 407))


class HttpAuthentication:
    """The authentication exchanges of one HTTP flow (see the module docstring)."""

    __slots__ = ("ctx", "ntlm", "kerberos")

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.ntlm = NtlmTracker(ctx, "http")
        self.kerberos = GssKerberos(ctx)

    def token(self, is_orig: bool, token: bytes, ts: float) -> None:
        """One decoded header token: NTLMSSP, SPNEGO or a GSS-API Kerberos token."""
        spnego.handle_blob(self.ctx, self.ntlm, token, is_orig, ts, kerberos=self.kerberos)

    def response(self, status_code: int, ts: float) -> None:
        """A final response: after an AUTHENTICATE it is the verdict on the NTLM exchange."""
        if self.ntlm.has_authenticate:
            self.ntlm.verdict(status_code not in REFUSED, ts, f"HTTP {status_code}")

    def end(self, ts: float) -> None:
        self.ntlm.end(ts)
        self.kerberos.end(ts)


for _scheme in ("ntlm", "negotiate", "kerberos"):
    register_auth_parser(_scheme, HttpAuthentication)
