"""Imports every application parser so that each registers itself with the engine.

One line per parser module; importing this module fills ``protocols.analyzer.ANALYZERS``.
"""

import protocols.dns  # noqa: F401  (registers "dns")
import protocols.http  # noqa: F401  (registers "http")
