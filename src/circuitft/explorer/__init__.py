"""The interactive circuit explorer: packing a run's graphs (:mod:`.pack`), the self-contained page the report
writes (:mod:`.page`), TensorBoard's Circuits tab (:mod:`.board`) and graph files for Gephi/Cytoscape
(:mod:`.export`). The component itself is ``static/explorer.js`` (plain JS + SVG, no dependencies)."""
