"""Imports every application parser so that each registers itself with the engine.

One line per parser module; importing this module fills ``protocols.analyzer.ANALYZERS``.
"""

import protocols.tls  # noqa: F401  (ssl)
import protocols.kerberos  # noqa: F401  (krb, krb_tcp)
