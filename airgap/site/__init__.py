"""The site: a disconnected installation over time. Which bundles it holds (from which signers, with which trust),
what its registry stores (the inventory a delta bundle is packed against), and how bundles are upgraded and
removed without touching what another bundle uses."""
