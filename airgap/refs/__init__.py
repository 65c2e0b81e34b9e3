"""Image references: the grammar, Zarf and prefix translation, and the translation map. Pure: no network.

:mod:`~airgap.refs.grammar` parses and prints references (re-exported here, since every wing names images:
``from airgap import refs; refs.parse("nginx")``); :mod:`~airgap.refs.translate` maps upstream refs to the
local registry (Zarf's scheme, registries.conf-style prefix rules) and back; :mod:`~airgap.refs.translation_map`
is the record ``airgap load`` writes of what went where.
"""

from airgap.refs.grammar import DOCKER_HUB, Reference, api_host, host_key, is_loopback_host, parse, same_host

__all__ = ["DOCKER_HUB", "Reference", "api_host", "host_key", "is_loopback_host", "parse", "same_host"]
